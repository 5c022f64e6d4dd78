//! `$((...))`: integer arithmetic expressions.

/// Evaluates an integer expression: decimal numbers, variable names (unset or empty: 0),
/// `( )`, unary `- + !`, `* / %`, `+ -`, `< <= > >=`, `== !=`, `&&`, `||`.
pub fn eval_arith(expr: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<i64, String> {
    #[derive(Debug, Clone, PartialEq)]
    enum T {
        Num(i64),
        Name(String),
        Op(&'static str),
    }
    const OPS: &[&str] = &[
        "||", "&&", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "!", "(", ")",
    ];
    let mut toks = Vec::new();
    let mut rest = expr.trim_start();
    while !rest.is_empty() {
        let c = rest.chars().next().unwrap_or(' ');
        let len = if c.is_ascii_digit() {
            let len = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            let n = rest[..len]
                .parse()
                .map_err(|_| format!("bad number `{}'", &rest[..len]))?;
            toks.push(T::Num(n));
            len
        } else if c == '_' || c.is_ascii_alphabetic() {
            let len = rest
                .find(|c: char| c != '_' && !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            toks.push(T::Name(rest[..len].to_string()));
            len
        } else if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            toks.push(T::Op(op));
            op.len()
        } else {
            return Err(format!("unexpected `{c}'"));
        };
        rest = rest[len..].trim_start();
    }

    fn precedence(op: &str) -> Option<u8> {
        Some(match op {
            "||" => 1,
            "&&" => 2,
            "==" | "!=" => 3,
            "<" | "<=" | ">" | ">=" => 4,
            "+" | "-" => 5,
            "*" | "/" | "%" => 6,
            _ => return None,
        })
    }
    struct P<'a> {
        toks: Vec<T>,
        at: usize,
        lookup: &'a dyn Fn(&str) -> Option<String>,
    }
    impl P<'_> {
        fn binary(&mut self, min: u8) -> Result<i64, String> {
            let mut left = self.unary()?;
            while let Some(T::Op(op)) = self.toks.get(self.at).cloned() {
                let Some(prec) = precedence(op).filter(|&p| p >= min) else {
                    break;
                };
                self.at += 1;
                let right = self.binary(prec + 1)?;
                left = match op {
                    "||" => i64::from(left != 0 || right != 0),
                    "&&" => i64::from(left != 0 && right != 0),
                    "==" => i64::from(left == right),
                    "!=" => i64::from(left != right),
                    "<" => i64::from(left < right),
                    "<=" => i64::from(left <= right),
                    ">" => i64::from(left > right),
                    ">=" => i64::from(left >= right),
                    "+" => left.wrapping_add(right),
                    "-" => left.wrapping_sub(right),
                    "*" => left.wrapping_mul(right),
                    _ if right == 0 => return Err("division by zero".into()),
                    "/" => left.wrapping_div(right),
                    _ => left.wrapping_rem(right),
                };
            }
            Ok(left)
        }

        fn unary(&mut self) -> Result<i64, String> {
            let tok = self.toks.get(self.at).cloned();
            self.at += 1;
            match tok {
                Some(T::Num(n)) => Ok(n),
                Some(T::Name(name)) => {
                    let value = (self.lookup)(&name).unwrap_or_default();
                    let value = value.trim();
                    if value.is_empty() {
                        return Ok(0);
                    }
                    value
                        .parse()
                        .map_err(|_| format!("{name}: `{value}' is not a number"))
                }
                Some(T::Op("-")) => Ok(self.unary()?.wrapping_neg()),
                Some(T::Op("+")) => self.unary(),
                Some(T::Op("!")) => Ok(i64::from(self.unary()? == 0)),
                Some(T::Op("(")) => {
                    let value = self.binary(1)?;
                    if self.toks.get(self.at) != Some(&T::Op(")")) {
                        return Err("missing `)'".into());
                    }
                    self.at += 1;
                    Ok(value)
                }
                Some(T::Op(op)) => Err(format!("unexpected `{op}'")),
                None => Err("missing operand".into()),
            }
        }
    }

    let mut parser = P {
        toks,
        at: 0,
        lookup,
    };
    let value = parser.binary(1)?;
    match parser.toks.get(parser.at) {
        None => Ok(value),
        Some(tok) => Err(format!("unexpected {tok:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic() {
        let vars = |name: &str| match name {
            "x" => Some("7".to_string()),
            "empty" => Some(String::new()),
            "word" => Some("abc".to_string()),
            _ => None,
        };
        let eval = |e: &str| eval_arith(e, &vars);
        assert_eq!(eval("1 + 2 * 3"), Ok(7));
        assert_eq!(eval("(1 + 2) * 3"), Ok(9));
        assert_eq!(eval("x * 2 - unset + empty"), Ok(14));
        assert_eq!(eval("-x + +3"), Ok(-4));
        assert_eq!(eval("x % 4 == 3 && !0"), Ok(1));
        assert_eq!(eval("1 < 2 || 1 / 1"), Ok(1));
        assert_eq!(eval("10 / 3"), Ok(3));
        assert_eq!(eval("2 >= 3"), Ok(0));
        assert!(eval("1 / 0").is_err());
        assert!(eval("word + 1").is_err());
        assert!(eval("1 +").is_err());
        assert!(eval("(1").is_err());
        assert!(eval("1 2").is_err());
        assert!(eval("1 = 2").is_err());
    }
}
