//! CEL, as admission uses it (webhook `matchConditions`, ValidatingAdmissionPolicy
//! validations, variables and message expressions): compiled once when a configuration
//! is written or loaded, evaluated over JSON objects on each request. The language is
//! the `cel` crate's (cel-rust) with its strings, lists and math extensions; compile
//! errors read as kube-apiserver's (`compilation failed: ERROR: <input>:1:2: …`).
//!
//! What cel-rust lacks compared with kube-apiserver's cel-go: a type checker (kube
//! reports "must evaluate to bool but got int" for any expression; here only for a
//! literal) and Kubernetes' own libraries (`quantity()`, `url()`, `authorizer`).
//! MutatingAdmissionPolicy's object construction (`Object{spec: Object.spec{…}}`,
//! `JSONPatch{op: …}`) is evaluated here ([`Activation::eval_object`]): cel-rust parses
//! it but has no types to build.

use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value as CelValue};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    for (name, ext) in [
        ("strings", cel::extensions::strings as fn(&mut Env) -> Result<(), cel::DeclarationError>),
        ("lists", cel::extensions::lists),
        ("math", cel::extensions::math),
    ] {
        if let Err(e) = env.add_extension(ext) {
            tracing::warn!(extension = name, error = ?e, "CEL extension not available");
        }
    }
    Arc::new(env)
});

/// A compiled expression and its source.
#[derive(Clone)]
pub struct Expr {
    program: Arc<Program>,
    /// The source text.
    pub source: String,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

/// Compile an expression.
///
/// # Errors
/// kube-apiserver's text: `compilation failed: ERROR: <input>:L:C: …` with the snippet.
pub fn compile(source: &str) -> Result<Expr, String> {
    ENV.compile(source)
        .map(|program| Expr { program: Arc::new(program), source: source.to_string() })
        .map_err(|e| format!("compilation failed: {e}"))
}

/// The type of an expression that is a literal (`1`, `'a'`), which is all that can be
/// known without a type checker.
pub fn literal_type(expr: &Expr) -> Option<&'static str> {
    use cel::common::ast::{Expr as Ast, LiteralValue};
    match &expr.program.expression().expr {
        Ast::Literal(l) => Some(match l {
            LiteralValue::Boolean(_) => "bool",
            LiteralValue::Bytes(_) => "bytes",
            LiteralValue::Double(_) => "double",
            LiteralValue::Int(_) => "int",
            LiteralValue::Null => "null_type",
            LiteralValue::String(_) => "string",
            LiteralValue::UInt(_) => "uint",
        }),
        Ast::List(_) => Some("list"),
        Ast::Map(_) => Some("map"),
        _ => None,
    }
}

/// Compile an expression that must yield a bool: the compile error, or "must evaluate
/// to bool but got T" for a literal of another type.
///
/// # Errors
/// The message of the field error.
pub fn compile_bool(source: &str) -> Result<Expr, String> {
    let expr = compile(source)?;
    match literal_type(&expr) {
        Some(t) if t != "bool" => Err(format!("must evaluate to bool but got {t}")),
        _ => Ok(expr),
    }
}

/// JSON into a CEL value: integers are `int`, other numbers `double`, objects maps.
pub fn to_cel(v: &Value) -> CelValue {
    match v {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => CelValue::Int(i),
            None => CelValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Array(items) => CelValue::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(m) => {
            let map: HashMap<Key, CelValue> = m.iter().map(|(k, v)| (Key::from(k.clone()), to_cel(v))).collect();
            CelValue::Map(Map { map: Arc::new(map) })
        }
    }
}

/// A CEL value as JSON (for messages and patches).
pub fn to_json(v: &CelValue) -> Value {
    match v {
        CelValue::Null => Value::Null,
        CelValue::Bool(b) => Value::Bool(*b),
        CelValue::Int(i) => Value::from(*i),
        CelValue::UInt(u) => Value::from(*u),
        CelValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        CelValue::String(s) => Value::String(s.to_string()),
        CelValue::List(items) => Value::Array(items.iter().map(to_json).collect()),
        CelValue::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.map.iter() {
                let key = match k {
                    Key::String(s) => s.to_string(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                out.insert(key, to_json(v));
            }
            Value::Object(out)
        }
        other => Value::String(format!("{other:?}")),
    }
}

/// The name of a CEL value's type, as cel-go prints it.
pub fn type_name(v: &CelValue) -> &'static str {
    match v {
        CelValue::Null => "null_type",
        CelValue::Bool(_) => "bool",
        CelValue::Int(_) => "int",
        CelValue::UInt(_) => "uint",
        CelValue::Float(_) => "double",
        CelValue::String(_) => "string",
        CelValue::Bytes(_) => "bytes",
        CelValue::List(_) => "list",
        CelValue::Map(_) => "map",
        _ => "dyn",
    }
}

/// The variables of one evaluation.
#[derive(Default)]
pub struct Activation {
    vars: Vec<(String, CelValue)>,
}

impl Activation {
    /// Bind `name` to a JSON value.
    pub fn bind(&mut self, name: &str, value: &Value) {
        self.bind_cel(name, to_cel(value));
    }
    /// Bind `name` to a CEL value (again: the new value replaces the old).
    pub fn bind_cel(&mut self, name: &str, value: CelValue) {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value));
    }

    /// Copy another activation's bindings.
    pub fn bind_all(&mut self, other: &Activation) {
        self.vars.extend(other.vars.iter().cloned());
    }

    /// Evaluate an expression.
    ///
    /// # Errors
    /// The evaluation error's text (`no such key: x`, …).
    pub fn eval(&self, expr: &Expr) -> Result<CelValue, String> {
        let mut ctx = Context::with_env(ENV.clone());
        for (name, value) in &self.vars {
            ctx.add_variable_from_value(name.as_str(), value.clone());
        }
        expr.program.execute(&ctx).map_err(|e| e.to_string())
    }

    /// Evaluate an expression that may construct objects (`Object{…}`, `JSONPatch{…}`,
    /// lists of them) into JSON: a struct is a JSON object of its fields, whatever the
    /// type name; anything else is evaluated by CEL.
    ///
    /// # Errors
    /// An evaluation error.
    pub fn eval_object(&self, expr: &Expr) -> Result<Value, String> {
        let mut ctx = Context::with_env(ENV.clone());
        for (name, value) in &self.vars {
            ctx.add_variable_from_value(name.as_str(), value.clone());
        }
        build(expr.program.expression(), &ctx)
    }

    /// Evaluate an expression that must yield a bool.
    ///
    /// # Errors
    /// An evaluation error, or a value of another type.
    pub fn eval_bool(&self, expr: &Expr) -> Result<bool, String> {
        match self.eval(expr)? {
            CelValue::Bool(b) => Ok(b),
            other => Err(format!("expression '{}' resulted in non-boolean value '{}'", expr.source, type_name(&other))),
        }
    }
}

fn build(e: &cel::IdedExpr, ctx: &Context) -> Result<Value, String> {
    use cel::common::ast::{EntryExpr, Expr as Ast};
    match &e.expr {
        Ast::Struct(s) => {
            let mut out = serde_json::Map::new();
            for entry in &s.entries {
                match &entry.expr {
                    EntryExpr::StructField(f) => {
                        out.insert(f.field.clone(), build(&f.value, ctx)?);
                    }
                    EntryExpr::MapEntry(_) => return Err(format!("unexpected map entry in {}", s.type_name)),
                }
            }
            Ok(Value::Object(out))
        }
        Ast::List(l) => l.elements.iter().map(|x| build(x, ctx)).collect::<Result<Vec<_>, _>>().map(Value::Array),
        _ => ctx.resolve(e).map(|v| to_json(&v)).map_err(|err| err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compile_errors_read_as_kube_apiservers() {
        let e = compile("... [] bad expression").expect_err("an error");
        assert!(e.starts_with("compilation failed: ERROR: <input>:1:"), "{e}");
        assert_eq!(compile_bool("1").expect_err("an error"), "must evaluate to bool but got int");
        assert!(compile_bool("object.metadata.name != 'x'").is_ok());
    }

    #[test]
    fn expressions_see_json_objects() {
        let mut a = Activation::default();
        a.bind("object", &json!({"spec": {"replicas": 3}, "metadata": {"name": "d", "labels": {"env": "prod"}}}));
        let t = |s: &str| a.eval_bool(&compile(s).expect("a value")).expect("a value");
        assert!(t("object.spec.replicas > 1"));
        assert!(t("object.spec.replicas % 2 == 1"));
        assert!(t("has(object.metadata.labels) && 'env' in object.metadata.labels"));
        assert!(t("object.metadata.labels.env == 'prod'"));
        assert!(!t("has(object.spec.paused)"));
        assert!(t("object.metadata.name.startsWith('d')"));
        let msg = a
            .eval(&compile("'wants replicas > 1, got ' + string(object.spec.replicas)").expect("a value"))
            .expect("a value");
        assert_eq!(to_json(&msg), json!("wants replicas > 1, got 3"));
        assert!(a.eval_bool(&compile("object.spec.replicas").expect("a value")).is_err());
    }

    #[test]
    fn object_construction_builds_json() {
        let mut a = Activation::default();
        a.bind("object", &json!({"spec": {"replicas": 3}}));
        let built = a.eval_object(&compile("Object{spec: Object.spec{replicas: object.spec.replicas + 1}, metadata: Object.metadata{annotations: {'a': 'b'}}}").expect("a value")).expect("a value");
        assert_eq!(built, json!({"spec": {"replicas": 4}, "metadata": {"annotations": {"a": "b"}}}));
        let patch = a
            .eval_object(&compile("[JSONPatch{op: 'replace', path: '/spec/replicas', value: 7}]").expect("a value"))
            .expect("a value");
        assert_eq!(patch, json!([{"op": "replace", "path": "/spec/replicas", "value": 7}]));
    }
}
