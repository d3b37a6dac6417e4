//! Parser of SafeKit's legacy failover rule language (reference §1.10):
//!
//! ```text
//! rule   ::= label ':' 'if' '(' expr ')' 'then' action ['(' ')'] ';'
//! expr   ::= and ('||' and)*        and ::= unary ('&&' unary)*
//! unary  ::= '!' unary | '(' expr ')' | operand [('==' | '!=') operand]
//! operand::= [local.|remote.]class.id  (id: name, '*' = all, '?' = any)
//!          | init | up | down | unknown
//! action ::= stop | stopstart | wait | restart | swap
//! ```
//!
//! Errors carry the byte offset where they were found so that the
//! configuration reader can name `file:line:column`.

use super::{Expr, FailoverRule, IdPattern, Operand, ResourceRef, RuleVerb, Side};
use crate::engine::ResourceState;

/// A syntax error at byte `offset` of the rule text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Byte offset in the text.
    pub offset: usize,
    /// What was expected and what was found.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    LParen,
    RParen,
    Not,
    And,
    Or,
    Eq,
    Ne,
    Semi,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Self::Word(w) => format!("'{w}'"),
            Self::LParen => "'('".into(),
            Self::RParen => "')'".into(),
            Self::Not => "'!'".into(),
            Self::And => "'&&'".into(),
            Self::Or => "'||'".into(),
            Self::Eq => "'=='".into(),
            Self::Ne => "'!='".into(),
            Self::Semi => "';'".into(),
            Self::End => "the end of the rules".into(),
        }
    }
}

const fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '*' | '?' | '-' | ':')
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, RuleError> {
    let mut out = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some(&(i, c)) = it.peek() {
        if c.is_whitespace() {
            it.next();
            continue;
        }
        let two = text.get(i..i + 2);
        let tok = match (c, two) {
            (_, Some("&&")) => Some((Tok::And, 2)),
            (_, Some("||")) => Some((Tok::Or, 2)),
            (_, Some("==")) => Some((Tok::Eq, 2)),
            (_, Some("!=")) => Some((Tok::Ne, 2)),
            ('!', _) => Some((Tok::Not, 1)),
            ('(', _) => Some((Tok::LParen, 1)),
            (')', _) => Some((Tok::RParen, 1)),
            (';', _) => Some((Tok::Semi, 1)),
            _ => None,
        };
        if let Some((t, n)) = tok {
            for _ in 0..n {
                it.next();
            }
            out.push((i, t));
            continue;
        }
        if !word_char(c) {
            return Err(RuleError { offset: i, message: format!("unexpected character '{c}'") });
        }
        let mut end = i;
        while let Some(&(j, d)) = it.peek() {
            if !word_char(d) {
                break;
            }
            end = j + d.len_utf8();
            it.next();
        }
        out.push((i, Tok::Word(text[i..end].to_string())));
    }
    out.push((text.len(), Tok::End));
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at.min(self.toks.len() - 1)].1
    }

    fn offset(&self) -> usize {
        self.toks[self.at.min(self.toks.len() - 1)].0
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        self.at += 1;
        t
    }

    fn error<T>(&self, expected: &str) -> Result<T, RuleError> {
        Err(RuleError { offset: self.offset(), message: format!("expected {expected}, found {}", self.peek().describe()) })
    }

    fn expect(&mut self, t: &Tok, expected: &str) -> Result<(), RuleError> {
        if self.peek() == t {
            self.bump();
            Ok(())
        } else {
            self.error(expected)
        }
    }

    fn keyword(&mut self, k: &str) -> Result<(), RuleError> {
        if matches!(self.peek(), Tok::Word(w) if w == k) {
            self.bump();
            Ok(())
        } else {
            self.error(&format!("'{k}'"))
        }
    }

    fn rule(&mut self) -> Result<FailoverRule, RuleError> {
        let Tok::Word(head) = self.peek().clone() else {
            return self.error("a rule label");
        };
        self.bump();
        let label = if let Some(l) = head.strip_suffix(':') {
            l.to_string()
        } else {
            if !matches!(self.peek(), Tok::Word(w) if w == ":") {
                return self.error(&format!("':' after the rule label '{head}'"));
            }
            self.bump();
            head
        };
        if label.is_empty() || label.contains(':') {
            return Err(RuleError { offset: self.toks[self.at - 1].0, message: format!("'{label}' is not a rule label") });
        }
        self.keyword("if")?;
        self.expect(&Tok::LParen, "'(' after 'if'")?;
        let expr = self.or()?;
        self.expect(&Tok::RParen, "')' or an operator ('&&', '||', '==', '!=')")?;
        self.keyword("then")?;
        let action = match self.peek() {
            Tok::Word(w) => match w.as_str() {
                "stop" => RuleVerb::Stop,
                "stopstart" => RuleVerb::Stopstart,
                "wait" => RuleVerb::Wait,
                "restart" => RuleVerb::Restart,
                "swap" => RuleVerb::Swap,
                _ => return self.error("an action (stop, stopstart, wait, restart, swap)"),
            },
            _ => return self.error("an action (stop, stopstart, wait, restart, swap)"),
        };
        self.bump();
        if self.peek() == &Tok::LParen {
            self.bump();
            self.expect(&Tok::RParen, "')' after the action")?;
        }
        self.expect(&Tok::Semi, "';' at the end of the rule")?;
        Ok(FailoverRule { label, expr, action })
    }

    fn or(&mut self) -> Result<Expr, RuleError> {
        let mut e = self.and()?;
        while self.peek() == &Tok::Or {
            self.bump();
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, RuleError> {
        let mut e = self.unary()?;
        while self.peek() == &Tok::And {
            self.bump();
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, RuleError> {
        match self.peek() {
            Tok::Not => {
                self.bump();
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Tok::LParen => {
                self.bump();
                let e = self.or()?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(e)
            }
            _ => {
                let at = self.offset();
                let left = self.operand()?;
                let eq = match self.peek() {
                    Tok::Eq => true,
                    Tok::Ne => false,
                    _ => {
                        return match left {
                            Operand::Resource(r) => {
                                Ok(Expr::Cmp { left: Operand::Resource(r), eq: true, right: Operand::State(ResourceState::Up) })
                            }
                            Operand::State(s) => Err(RuleError {
                                offset: at,
                                message: format!("'{s}' alone is not a condition (compare a resource with it)"),
                            }),
                        };
                    }
                };
                self.bump();
                let right = self.operand()?;
                if matches!((&left, &right), (Operand::State(_), Operand::State(_))) {
                    return Err(RuleError {
                        offset: at,
                        message: "a comparison of two states is always the same: compare a resource".into(),
                    });
                }
                Ok(Expr::Cmp { left, eq, right })
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, RuleError> {
        let at = self.offset();
        let Tok::Word(w) = self.peek().clone() else {
            return self.error("a resource (class.id) or a state (init, up, down, unknown)");
        };
        self.bump();
        if let Ok(s) = w.parse::<ResourceState>() {
            return Ok(Operand::State(s));
        }
        let (side, rest) = if let Some(r) = w.strip_prefix("local.") {
            (Side::Local, r)
        } else if let Some(r) = w.strip_prefix("remote.") {
            (Side::Remote, r)
        } else {
            (Side::Local, w.as_str())
        };
        let bad = || RuleError {
            offset: at,
            message: format!(
                "expected a resource (class.id, e.g. tcp.app or remote.intf.*) or a state (init, up, down, unknown), found '{w}'"
            ),
        };
        let (class, id) = rest.split_once('.').ok_or_else(bad)?;
        if class.is_empty() || id.is_empty() || !class.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad());
        }
        let id = match id {
            "*" => IdPattern::All,
            "?" => IdPattern::Any,
            name if name.contains(['*', '?']) => {
                return Err(RuleError { offset: at, message: format!("'{w}': '*' and '?' stand for the whole id, not part of it") });
            }
            name => IdPattern::Name(name.to_string()),
        };
        Ok(Operand::Resource(ResourceRef { side, class: class.to_string(), id }))
    }
}

/// Parses rules in the legacy language. A Lua block is refused.
pub fn parse(text: &str) -> Result<Vec<FailoverRule>, RuleError> {
    if let Some(i) = text.find("--Lua").or_else(|| text.find("if_then(")).or_else(|| text.find("Rules.disable")) {
        return Err(RuleError {
            offset: i,
            message: "Lua failover rules are not supported: write them in the legacy language (label: if (expression) then action;)".into(),
        });
    }
    let mut p = Parser { toks: lex(text)?, at: 0 };
    let mut rules = Vec::new();
    while p.peek() != &Tok::End {
        let r = p.rule()?;
        if rules.iter().any(|o: &FailoverRule| o.label == r.label) {
            return Err(RuleError { offset: p.toks[p.at - 1].0, message: format!("two rules are labelled '{}'", r.label) });
        }
        rules.push(r);
    }
    Ok(rules)
}
