//! Label and field selectors: parsed from the query-string syntax kubectl sends
//! (`app=web,tier notin (db),!legacy`, `spec.nodeName=n1,status.phase!=Failed`) or built
//! from a `LabelSelector` object, and matched against objects held as JSON.
//!
//! # Guarantees
//! Semantics follow k8s.io/apimachinery: `!=` and `notin` match objects without the
//! key; `in`, `=`, `>` and `<` require it; an empty selector matches everything.

use serde_json::Value;
use std::collections::BTreeMap;

/// A selector operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// `key=v`, `key==v`, or `key in (v1,v2)`.
    In,
    /// `key!=v` or `key notin (v1,v2)`.
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>N`.
    Gt,
    /// `key<N`.
    Lt,
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The operator.
    pub operator: Operator,
    /// The values (one for Gt/Lt, none for Exists/DoesNotExist).
    pub values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt | Operator::Lt => {
                let (Some(v), Some(bound)) = (value, self.values.first()) else {
                    return false;
                };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::Gt { v > bound } else { v < bound }
            }
        }
    }
}

/// A parsed label selector: all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// The requirements, ANDed.
    pub requirements: Vec<Requirement>,
    /// A selector that matches nothing (a `LabelSelector` object that is null).
    pub nothing: bool,
}

/// A selector that could not be parsed; the message is what kube-apiserver would say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

fn valid_label_value(v: &str) -> bool {
    v.len() <= 63
        && (v.is_empty()
            || (v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                && v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && v.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())))
}

/// Whether `key` is a valid label key (optional DNS-subdomain prefix, `/`, name part).
pub fn valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty() || p.len() > 253 || !crate::meta::is_dns1123_subdomain(p))
    {
        return false;
    }
    !name.is_empty() && valid_label_value(name)
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }
    fn word(&mut self) -> String {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.s.len() {
            let c = self.s[self.pos];
            if c.is_ascii_whitespace() || matches!(c, b',' | b'=' | b'!' | b'(' | b')' | b'<' | b'>') {
                break;
            }
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }
    fn eat(&mut self, t: &str) -> bool {
        self.skip_ws();
        if self.s[self.pos..].starts_with(t.as_bytes()) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }
}

impl LabelSelector {
    /// Everything.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// Whether the selector has no requirements (and is not the match-nothing selector).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty() && !self.nothing
    }

    /// Parse the query-string syntax.
    ///
    /// # Errors
    /// A [`SelectorError`] naming the problem for malformed input.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut lx = Lexer { s: input.as_bytes(), pos: 0 };
        let mut requirements = Vec::new();
        if input.trim().is_empty() {
            return Ok(LabelSelector::default());
        }
        loop {
            let negated = lx.peek() == Some(b'!') && !lx.s[lx.pos..].starts_with(b"!=");
            if negated {
                lx.pos += 1;
            }
            let key = lx.word();
            if key.is_empty() {
                return Err(SelectorError(format!(
                    "unable to parse requirement: found '{}', expected: identifier",
                    rest(&lx)
                )));
            }
            if !valid_label_key(&key) {
                return Err(SelectorError(format!("unable to parse requirement: invalid label key \"{key}\"")));
            }
            let req = if negated {
                Requirement { key, operator: Operator::DoesNotExist, values: vec![] }
            } else if lx.eat("==") || lx.eat("=") {
                Requirement { key, operator: Operator::In, values: vec![value(&mut lx)?] }
            } else if lx.eat("!=") {
                Requirement { key, operator: Operator::NotIn, values: vec![value(&mut lx)?] }
            } else if lx.eat(">") {
                let v = value(&mut lx)?;
                int_value(&v)?;
                Requirement { key, operator: Operator::Gt, values: vec![v] }
            } else if lx.eat("<") {
                let v = value(&mut lx)?;
                int_value(&v)?;
                Requirement { key, operator: Operator::Lt, values: vec![v] }
            } else {
                let save = lx.pos;
                let w = lx.word();
                match w.as_str() {
                    "in" | "notin" => {
                        if !lx.eat("(") {
                            return Err(SelectorError(format!(
                                "unable to parse requirement: found '{}', expected: '('",
                                rest(&lx)
                            )));
                        }
                        let mut values = Vec::new();
                        loop {
                            if lx.eat(")") {
                                break;
                            }
                            let v = value(&mut lx)?;
                            values.push(v);
                            if lx.eat(",") {
                                continue;
                            }
                            if lx.eat(")") {
                                break;
                            }
                            return Err(SelectorError(format!(
                                "unable to parse requirement: found '{}', expected: ',' or ')'",
                                rest(&lx)
                            )));
                        }
                        if values.is_empty() {
                            return Err(SelectorError("for 'in', 'notin' operators, values set can't be empty".into()));
                        }
                        let operator = if w == "in" { Operator::In } else { Operator::NotIn };
                        Requirement { key, operator, values }
                    }
                    "" => {
                        lx.pos = save;
                        Requirement { key, operator: Operator::Exists, values: vec![] }
                    }
                    other => {
                        return Err(SelectorError(format!(
                            "unable to parse requirement: found '{other}', expected: in, notin, =, ==, !=, gt, lt"
                        )));
                    }
                }
            };
            requirements.push(req);
            match lx.peek() {
                None => break,
                Some(b',') => {
                    lx.pos += 1;
                }
                Some(_) => {
                    return Err(SelectorError(format!("found '{}', expected: ',' or 'end of string'", rest(&lx))));
                }
            }
        }
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// Build from a `metav1.LabelSelector` JSON object (`matchLabels`, `matchExpressions`).
    /// `None` (a null selector) matches nothing, an empty object matches everything.
    ///
    /// # Errors
    /// A [`SelectorError`] for an unknown operator or a malformed expression.
    pub fn from_object(selector: Option<&Value>) -> Result<Self, SelectorError> {
        let Some(sel) = selector.filter(|v| !v.is_null()) else {
            return Ok(LabelSelector { requirements: vec![], nothing: true });
        };
        let mut requirements = Vec::new();
        if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                requirements.push(Requirement {
                    key: k.clone(),
                    operator: Operator::In,
                    values: vec![v.as_str().unwrap_or_default().to_string()],
                });
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default().to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                let operator = match e.get("operator").and_then(Value::as_str).unwrap_or_default() {
                    "In" => Operator::In,
                    "NotIn" => Operator::NotIn,
                    "Exists" => Operator::Exists,
                    "DoesNotExist" => Operator::DoesNotExist,
                    other => {
                        return Err(SelectorError(format!("\"{other}\" is not a valid label selector operator")));
                    }
                };
                requirements.push(Requirement { key, operator, values });
            }
        }
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// Whether the labels satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Match an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.is_empty() {
            return true;
        }
        self.matches(&crate::meta::labels(obj))
    }
}

fn rest(lx: &Lexer<'_>) -> String {
    String::from_utf8_lossy(&lx.s[lx.pos..]).into_owned()
}

fn value(lx: &mut Lexer<'_>) -> Result<String, SelectorError> {
    let v = lx.word();
    if !valid_label_value(&v) {
        return Err(SelectorError(format!(
            "unable to parse requirement: invalid label value: \"{v}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        )));
    }
    Ok(v)
}

fn int_value(v: &str) -> Result<i64, SelectorError> {
    v.parse::<i64>().map_err(|_| {
        SelectorError(format!(
            "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {v}"
        ))
    })
}

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field path, e.g. `spec.nodeName`.
    pub field: String,
    /// Whether the term is `!=`.
    pub negated: bool,
    /// The value.
    pub value: String,
}

/// A parsed field selector: all terms must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// The terms, ANDed.
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parse `a=b,c!=d,e==f` (backslash escapes `,`, `=` and `\`).
    ///
    /// # Errors
    /// A [`SelectorError`] for a term without an operator.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        if input.trim().is_empty() {
            return Ok(FieldSelector::default());
        }
        for term in split_unescaped(input, ',') {
            let term = term.trim();
            let (field, negated, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, false, v)
            } else {
                return Err(SelectorError(format!("invalid selector: '{term}'; can't understand '{term}'")));
            };
            requirements.push(FieldRequirement {
                field: field.trim().to_string(),
                negated,
                value: unescape(value.trim()),
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Match with `lookup` giving each field's value (`None` counts as the empty string).
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let v = lookup(&r.field).unwrap_or_default();
            (v == r.value) != r.negated
        })
    }

    /// The value required for `field` by an `=` term, if any (used to narrow a scan).
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements.iter().find(|r| r.field == field && !r.negated).map(|r| r.value.as_str())
    }
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            if let Some(last) = out.last_mut() {
                last.push('\\');
                last.push(c);
            }
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(String::new());
        } else if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// The value at a dotted path in a JSON object, rendered as a field selector compares it
/// (strings as they are, booleans and numbers as text).
pub fn field_value(obj: &Value, path: &str) -> Option<String> {
    let mut cur = obj;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_every_operator() {
        let s =
            LabelSelector::parse("app=web, tier!=db,env in (prod, staging),zone notin (a),gpu,!legacy,cpu>2,mem<10")
                .expect("parses");
        let ops: Vec<_> = s.requirements.iter().map(|r| r.operator.clone()).collect();
        assert_eq!(
            ops,
            vec![
                Operator::In,
                Operator::NotIn,
                Operator::In,
                Operator::NotIn,
                Operator::Exists,
                Operator::DoesNotExist,
                Operator::Gt,
                Operator::Lt
            ]
        );
        let ok = labels(&[("app", "web"), ("env", "prod"), ("gpu", ""), ("cpu", "4"), ("mem", "3")]);
        assert!(s.matches(&ok));
        let mut bad = ok.clone();
        bad.insert("legacy".into(), "y".into());
        assert!(!s.matches(&bad));
        let mut bad = ok.clone();
        bad.insert("cpu".into(), "2".into());
        assert!(!s.matches(&bad));
    }

    #[test]
    fn not_equal_matches_missing_key() {
        let s = LabelSelector::parse("tier!=db").expect("parses");
        assert!(s.matches(&labels(&[])));
        assert!(!s.matches(&labels(&[("tier", "db")])));
    }

    #[test]
    fn rejects_malformed() {
        assert!(LabelSelector::parse("app=").is_ok());
        assert!(LabelSelector::parse("a b").is_err());
        assert!(LabelSelector::parse("env in prod").is_err());
        assert!(LabelSelector::parse("cpu>x").is_err());
        assert!(LabelSelector::parse("=x").is_err());
    }

    #[test]
    fn from_object_null_matches_nothing_empty_everything() {
        let none = LabelSelector::from_object(None).expect("ok");
        assert!(!none.matches(&labels(&[])));
        let all = LabelSelector::from_object(Some(&serde_json::json!({}))).expect("ok");
        assert!(all.matches(&labels(&[("a", "b")])));
        let expr = LabelSelector::from_object(Some(&serde_json::json!({"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "c", "operator": "DoesNotExist"}]}))).expect("ok");
        assert!(expr.matches(&labels(&[("a", "b")])));
        assert!(!expr.matches(&labels(&[("a", "b"), ("c", "")])));
    }

    #[test]
    fn field_selector_terms() {
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").expect("parses");
        let pod = serde_json::json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert!(s.matches(|f| field_value(&pod, f)));
        let s = FieldSelector::parse("spec.nodeName=").expect("parses");
        assert!(!s.matches(|f| field_value(&pod, f)));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
