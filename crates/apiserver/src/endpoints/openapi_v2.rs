//! `/openapi/v2`: the Swagger 2.0 document of every served kind, in JSON and in the
//! protobuf form client-go asks for first (`application/com.github.proto-openapi.spec.
//! v2@v1.0+protobuf`: the gnostic `openapi.v2.Document` message) — kubectl up to 1.28,
//! Helm 3 and client-go tools validate and explain with it.
//!
//! The document is derived from the OpenAPI v3 documents ([`crate::openapi`]): the same
//! schemas, as `#/definitions/`, and per kind the operations with their query
//! parameters and `x-kubernetes-group-version-kind` / `x-kubernetes-action` extensions
//! (client-go's dry-run and field-validation checks read them off the patch operation).
//!
//! # Caveats
//! Only what clients read is carried into the protobuf form: definitions (type, format,
//! description, `$ref`, properties, items, additionalProperties, required, enum,
//! vendor extensions), paths with their operations and parameters, and responses.

use prost::Message;
use serde_json::{Map, Value, json};

/// The gnostic OpenAPI v2 messages (package `openapi.v2`), the parts vkube fills in;
/// field numbers as in gnostic's `OpenAPIv2.proto`. The oneofs mirror the messages'
/// shapes, which differ in size.
#[allow(clippy::large_enum_variant)]
pub mod proto {
    /// The whole document.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Document {
        #[prost(string, tag = "1")]
        pub swagger: String,
        #[prost(message, optional, tag = "2")]
        pub info: Option<Info>,
        #[prost(string, repeated, tag = "5")]
        pub schemes: Vec<String>,
        #[prost(message, optional, tag = "8")]
        pub paths: Option<Paths>,
        #[prost(message, optional, tag = "9")]
        pub definitions: Option<Definitions>,
    }

    /// `info`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Info {
        #[prost(string, tag = "1")]
        pub title: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    /// `paths`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Paths {
        #[prost(message, repeated, tag = "2")]
        pub path: Vec<NamedPathItem>,
    }

    /// One path.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedPathItem {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<PathItem>,
    }

    /// The operations of a path.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PathItem {
        #[prost(message, optional, tag = "2")]
        pub get: Option<Operation>,
        #[prost(message, optional, tag = "3")]
        pub put: Option<Operation>,
        #[prost(message, optional, tag = "4")]
        pub post: Option<Operation>,
        #[prost(message, optional, tag = "5")]
        pub delete: Option<Operation>,
        #[prost(message, optional, tag = "8")]
        pub patch: Option<Operation>,
    }

    /// One operation.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Operation {
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(string, tag = "5")]
        pub operation_id: String,
        #[prost(string, repeated, tag = "6")]
        pub produces: Vec<String>,
        #[prost(string, repeated, tag = "7")]
        pub consumes: Vec<String>,
        #[prost(message, repeated, tag = "8")]
        pub parameters: Vec<ParametersItem>,
        #[prost(message, optional, tag = "9")]
        pub responses: Option<Responses>,
        #[prost(string, repeated, tag = "10")]
        pub schemes: Vec<String>,
        #[prost(message, repeated, tag = "13")]
        pub vendor_extension: Vec<NamedAny>,
    }

    /// A parameter or a reference to one.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ParametersItem {
        #[prost(oneof = "parameters_item::Oneof", tags = "1")]
        pub oneof: Option<parameters_item::Oneof>,
    }

    /// `ParametersItem.oneof`.
    pub mod parameters_item {
        /// A parameter.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            Parameter(super::Parameter),
        }
    }

    /// A body or non-body parameter.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Parameter {
        #[prost(oneof = "parameter::Oneof", tags = "1, 2")]
        pub oneof: Option<parameter::Oneof>,
    }

    /// `Parameter.oneof`.
    pub mod parameter {
        /// Which kind of parameter.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            BodyParameter(super::BodyParameter),
            #[prost(message, tag = "2")]
            NonBodyParameter(super::NonBodyParameter),
        }
    }

    /// `in: body`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BodyParameter {
        #[prost(string, tag = "1")]
        pub description: String,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(string, tag = "3")]
        pub r#in: String,
        #[prost(bool, tag = "4")]
        pub required: bool,
        #[prost(message, optional, tag = "5")]
        pub schema: Option<Schema>,
    }

    /// A query or path parameter.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NonBodyParameter {
        #[prost(oneof = "non_body_parameter::Oneof", tags = "3, 4")]
        pub oneof: Option<non_body_parameter::Oneof>,
    }

    /// `NonBodyParameter.oneof`.
    pub mod non_body_parameter {
        /// Where the parameter is.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "3")]
            QueryParameterSubSchema(super::SimpleParameter),
            #[prost(message, tag = "4")]
            PathParameterSubSchema(super::PathParameter),
        }
    }

    /// `in: query` (QueryParameterSubSchema).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SimpleParameter {
        #[prost(bool, tag = "1")]
        pub required: bool,
        #[prost(string, tag = "2")]
        pub r#in: String,
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(string, tag = "4")]
        pub name: String,
        #[prost(string, tag = "6")]
        pub r#type: String,
        #[prost(bool, tag = "20")]
        pub unique_items: bool,
    }

    /// `in: path` (PathParameterSubSchema: the same fields, other numbers).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PathParameter {
        #[prost(bool, tag = "1")]
        pub required: bool,
        #[prost(string, tag = "2")]
        pub r#in: String,
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(string, tag = "4")]
        pub name: String,
        #[prost(string, tag = "5")]
        pub r#type: String,
        #[prost(bool, tag = "19")]
        pub unique_items: bool,
    }

    /// `responses`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Responses {
        #[prost(message, repeated, tag = "1")]
        pub response_code: Vec<NamedResponseValue>,
    }

    /// One response code.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedResponseValue {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<ResponseValue>,
    }

    /// A response.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResponseValue {
        #[prost(oneof = "response_value::Oneof", tags = "1")]
        pub oneof: Option<response_value::Oneof>,
    }

    /// `ResponseValue.oneof`.
    pub mod response_value {
        /// A response.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            Response(super::Response),
        }
    }

    /// A response: its description and body schema.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Response {
        #[prost(string, tag = "1")]
        pub description: String,
        #[prost(message, optional, tag = "2")]
        pub schema: Option<SchemaItem>,
    }

    /// A response schema.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SchemaItem {
        #[prost(oneof = "schema_item::Oneof", tags = "1")]
        pub oneof: Option<schema_item::Oneof>,
    }

    /// `SchemaItem.oneof`.
    pub mod schema_item {
        /// A schema.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            Schema(super::Schema),
        }
    }

    /// `definitions`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Definitions {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    /// A named schema (definitions, properties).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedSchema {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Schema>,
    }

    /// A JSON schema.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Schema {
        #[prost(string, tag = "1")]
        pub xref: String,
        #[prost(string, tag = "2")]
        pub format: String,
        #[prost(string, tag = "3")]
        pub title: String,
        #[prost(string, tag = "4")]
        pub description: String,
        #[prost(string, repeated, tag = "19")]
        pub required: Vec<String>,
        #[prost(message, repeated, tag = "20")]
        pub r#enum: Vec<Any>,
        #[prost(message, optional, boxed, tag = "21")]
        pub additional_properties: Option<Box<AdditionalPropertiesItem>>,
        #[prost(message, optional, tag = "22")]
        pub r#type: Option<TypeItem>,
        #[prost(message, optional, tag = "23")]
        pub items: Option<ItemsItem>,
        #[prost(message, optional, tag = "25")]
        pub properties: Option<Properties>,
        #[prost(message, repeated, tag = "31")]
        pub vendor_extension: Vec<NamedAny>,
    }

    /// `additionalProperties`: a schema or a boolean.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AdditionalPropertiesItem {
        #[prost(oneof = "additional_properties_item::Oneof", tags = "1, 2")]
        pub oneof: Option<additional_properties_item::Oneof>,
    }

    /// `AdditionalPropertiesItem.oneof`.
    pub mod additional_properties_item {
        /// A schema or a boolean.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            Schema(super::Schema),
            #[prost(bool, tag = "2")]
            Boolean(bool),
        }
    }

    /// `type`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeItem {
        #[prost(string, repeated, tag = "1")]
        pub value: Vec<String>,
    }

    /// `items`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ItemsItem {
        #[prost(message, repeated, tag = "1")]
        pub schema: Vec<Schema>,
    }

    /// `properties`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Properties {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    /// A vendor extension.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedAny {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Any>,
    }

    /// A value, as YAML text (how gnostic carries extensions and enum values).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "2")]
        pub yaml: String,
    }
}

/// The v2 form of a v3 schema: `#/components/schemas/` references become
/// `#/definitions/`, a lone `allOf` reference becomes the reference itself (as
/// kube-apiserver's v2 documents have it), and `nullable`, which v2 lacks, goes.
/// Keys of `properties` are names, not keywords (JSONSchemaProps has properties named
/// `$ref` and `nullable`), and `default`, `example`, `enum` and extensions are data.
pub fn schema_to_v2(schema: &Value) -> Value {
    let Value::Object(m) = schema else { return schema.clone() };
    let mut out = Map::new();
    for (k, v) in m {
        match k.as_str() {
            "nullable" => {}
            "$ref" => {
                let r = v.as_str().unwrap_or_default().replace("#/components/schemas/", "#/definitions/");
                out.insert(k.clone(), json!(r));
            }
            "allOf" if v.as_array().is_some_and(|a| a.len() == 1 && a[0].get("$ref").is_some()) => {
                if let Some(r) = v.pointer("/0/$ref").and_then(Value::as_str) {
                    out.insert("$ref".into(), json!(r.replace("#/components/schemas/", "#/definitions/")));
                }
            }
            "properties" | "patternProperties" | "definitions" => {
                let named = v
                    .as_object()
                    .map(|props| props.iter().map(|(name, s)| (name.clone(), schema_to_v2(s))).collect::<Map<_, _>>());
                out.insert(k.clone(), named.map_or_else(|| v.clone(), Value::Object));
            }
            "default" | "example" | "enum" => {
                out.insert(k.clone(), v.clone());
            }
            _ if k.starts_with("x-") => {
                out.insert(k.clone(), v.clone());
            }
            _ => {
                let converted = match v {
                    Value::Array(a) => Value::Array(a.iter().map(schema_to_v2).collect()),
                    other => schema_to_v2(other),
                };
                out.insert(k.clone(), converted);
            }
        }
    }
    Value::Object(out)
}

/// The v2 form of a v3 operation: query and path parameters, the request body as a
/// body parameter, responses with schemas.
pub fn operation_to_v2(op: &Value) -> Value {
    let mut out = Map::new();
    for k in ["description", "operationId", "x-kubernetes-action", "x-kubernetes-group-version-kind"] {
        if let Some(v) = op.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    let mut params: Vec<Value> = Vec::new();
    for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
        let mut q = json!({
            "name": p.get("name").cloned().unwrap_or_default(),
            "in": p.get("in").cloned().unwrap_or(json!("query")),
            "type": p.pointer("/schema/type").cloned().unwrap_or(json!("string")),
            "uniqueItems": true,
        });
        for k in ["description", "required"] {
            if let Some(v) = p.get(k) {
                q[k] = v.clone();
            }
        }
        params.push(q);
    }
    if let Some(content) = op.pointer("/requestBody/content").and_then(Value::as_object) {
        out.insert("consumes".into(), json!(content.keys().collect::<Vec<_>>()));
        let schema = content
            .get("application/json")
            .or_else(|| content.values().next())
            .and_then(|c| c.get("schema"))
            .map(schema_to_v2)
            .unwrap_or_else(|| json!({"type": "object"}));
        params.insert(0, json!({"name": "body", "in": "body", "required": true, "schema": schema}));
    }
    out.insert("parameters".into(), json!(params));
    out.insert("produces".into(), json!(["application/json", "application/yaml"]));
    out.insert("schemes".into(), json!(["https"]));
    let mut responses = Map::new();
    for (code, r) in op.get("responses").and_then(Value::as_object).into_iter().flatten() {
        let mut v2 = json!({"description": r.get("description").cloned().unwrap_or(json!(""))});
        if let Some(s) = r.pointer("/content/application~1json/schema") {
            v2["schema"] = schema_to_v2(s);
        }
        responses.insert(code.clone(), v2);
    }
    out.insert("responses".into(), Value::Object(responses));
    Value::Object(out)
}

fn yaml_any(v: &Value) -> proto::Any {
    // JSON is YAML; gnostic's readers parse the text as YAML.
    proto::Any { yaml: v.to_string() }
}

fn extensions(m: &Map<String, Value>) -> Vec<proto::NamedAny> {
    m.iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| proto::NamedAny { name: k.clone(), value: Some(yaml_any(v)) })
        .collect()
}

fn str_of(m: &Map<String, Value>, k: &str) -> String {
    m.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// A v2 schema (JSON) as the gnostic message.
pub fn schema_proto(v: &Value) -> proto::Schema {
    let Some(m) = v.as_object() else { return proto::Schema::default() };
    let named = |key: &str| -> Vec<proto::NamedSchema> {
        m.get(key)
            .and_then(Value::as_object)
            .map(|props| {
                props
                    .iter()
                    .map(|(name, s)| proto::NamedSchema { name: name.clone(), value: Some(schema_proto(s)) })
                    .collect()
            })
            .unwrap_or_default()
    };
    let additional = match m.get("additionalProperties") {
        Some(Value::Bool(b)) => Some(Box::new(proto::AdditionalPropertiesItem {
            oneof: Some(proto::additional_properties_item::Oneof::Boolean(*b)),
        })),
        Some(s @ Value::Object(_)) => Some(Box::new(proto::AdditionalPropertiesItem {
            oneof: Some(proto::additional_properties_item::Oneof::Schema(schema_proto(s))),
        })),
        _ => None,
    };
    let types: Vec<String> = match m.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str().map(String::from)).collect(),
        _ => vec![],
    };
    proto::Schema {
        xref: str_of(m, "$ref"),
        format: str_of(m, "format"),
        title: str_of(m, "title"),
        description: str_of(m, "description"),
        required: m
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default(),
        r#enum: m.get("enum").and_then(Value::as_array).map(|e| e.iter().map(yaml_any).collect()).unwrap_or_default(),
        additional_properties: additional,
        r#type: (!types.is_empty()).then_some(proto::TypeItem { value: types }),
        items: m.get("items").map(|i| proto::ItemsItem { schema: vec![schema_proto(i)] }),
        properties: m
            .contains_key("properties")
            .then(|| proto::Properties { additional_properties: named("properties") }),
        vendor_extension: extensions(m),
    }
}

fn parameter_proto(p: &Value) -> proto::ParametersItem {
    use proto::{non_body_parameter, parameter, parameters_item};
    let m = p.as_object().cloned().unwrap_or_default();
    let inner = match str_of(&m, "in").as_str() {
        "body" => parameter::Oneof::BodyParameter(proto::BodyParameter {
            description: str_of(&m, "description"),
            name: str_of(&m, "name"),
            r#in: "body".into(),
            required: m.get("required").and_then(Value::as_bool).unwrap_or(false),
            schema: m.get("schema").map(schema_proto),
        }),
        "path" => parameter::Oneof::NonBodyParameter(proto::NonBodyParameter {
            oneof: Some(non_body_parameter::Oneof::PathParameterSubSchema(proto::PathParameter {
                required: true,
                r#in: "path".into(),
                description: str_of(&m, "description"),
                name: str_of(&m, "name"),
                r#type: str_of(&m, "type"),
                unique_items: m.get("uniqueItems").and_then(Value::as_bool).unwrap_or(false),
            })),
        }),
        _ => parameter::Oneof::NonBodyParameter(proto::NonBodyParameter {
            oneof: Some(non_body_parameter::Oneof::QueryParameterSubSchema(proto::SimpleParameter {
                required: m.get("required").and_then(Value::as_bool).unwrap_or(false),
                r#in: "query".into(),
                description: str_of(&m, "description"),
                name: str_of(&m, "name"),
                r#type: str_of(&m, "type"),
                unique_items: m.get("uniqueItems").and_then(Value::as_bool).unwrap_or(false),
            })),
        }),
    };
    proto::ParametersItem { oneof: Some(parameters_item::Oneof::Parameter(proto::Parameter { oneof: Some(inner) })) }
}

fn operation_proto(op: &Value) -> proto::Operation {
    let m = op.as_object().cloned().unwrap_or_default();
    let strings = |k: &str| -> Vec<String> {
        m.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let responses = m.get("responses").and_then(Value::as_object).map(|rs| proto::Responses {
        response_code: rs
            .iter()
            .map(|(code, r)| proto::NamedResponseValue {
                name: code.clone(),
                value: Some(proto::ResponseValue {
                    oneof: Some(proto::response_value::Oneof::Response(proto::Response {
                        description: r.get("description").and_then(Value::as_str).unwrap_or_default().to_string(),
                        schema: r.get("schema").map(|s| proto::SchemaItem {
                            oneof: Some(proto::schema_item::Oneof::Schema(schema_proto(s))),
                        }),
                    })),
                }),
            })
            .collect(),
    });
    proto::Operation {
        description: str_of(&m, "description"),
        operation_id: str_of(&m, "operationId"),
        produces: strings("produces"),
        consumes: strings("consumes"),
        parameters: m.get("parameters").and_then(Value::as_array).into_iter().flatten().map(parameter_proto).collect(),
        responses,
        schemes: strings("schemes"),
        vendor_extension: extensions(&m),
    }
}

/// A v2 document (JSON) as the gnostic message's bytes.
pub fn document_proto(doc: &Value) -> Vec<u8> {
    let op = |item: &Value, method: &str| item.get(method).map(operation_proto);
    let paths = doc.get("paths").and_then(Value::as_object).map(|ps| proto::Paths {
        path: ps
            .iter()
            .map(|(name, item)| proto::NamedPathItem {
                name: name.clone(),
                value: Some(proto::PathItem {
                    get: op(item, "get"),
                    put: op(item, "put"),
                    post: op(item, "post"),
                    delete: op(item, "delete"),
                    patch: op(item, "patch"),
                }),
            })
            .collect(),
    });
    let definitions = doc.get("definitions").and_then(Value::as_object).map(|ds| proto::Definitions {
        additional_properties: ds
            .iter()
            .map(|(name, s)| proto::NamedSchema { name: name.clone(), value: Some(schema_proto(s)) })
            .collect(),
    });
    let info = doc.get("info").map(|i| proto::Info {
        title: i.get("title").and_then(Value::as_str).unwrap_or_default().to_string(),
        version: i.get("version").and_then(Value::as_str).unwrap_or_default().to_string(),
    });
    proto::Document {
        swagger: doc.get("swagger").and_then(Value::as_str).unwrap_or("2.0").to_string(),
        info,
        schemes: vec!["https".into()],
        paths,
        definitions,
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_schemas_become_v2_definitions() {
        let v3 = json!({"properties": {"metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.M"}], "description": "m"}, "n": {"type": "string", "nullable": true}}});
        // Properties named like keywords (JSONSchemaProps' own schema) stay schemas.
        let props = json!({"properties": {"$ref": {"type": "string"}, "nullable": {"type": "boolean"}}, "default": {"$ref": "x"}});
        assert_eq!(schema_to_v2(&props), props);
        assert_eq!(
            schema_to_v2(&v3),
            json!({"properties": {"metadata": {"$ref": "#/definitions/io.k8s.M", "description": "m"}, "n": {"type": "string"}}})
        );
    }

    #[test]
    fn the_protobuf_document_carries_definitions_paths_and_extensions() {
        let doc = json!({
            "swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1"},
            "paths": {"/api/v1/namespaces/{namespace}/configmaps/{name}": {"patch": operation_to_v2(&json!({
                "operationId": "patchConfigMap",
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                "requestBody": {"content": {"application/merge-patch+json": {"schema": {"type": "object"}}}},
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/io.k8s.api.core.v1.ConfigMap"}}}}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            }))}},
            "definitions": {"io.k8s.api.core.v1.ConfigMap": {
                "type": "object", "required": ["data"],
                "properties": {"data": {"type": "object", "additionalProperties": {"type": "string"}}},
                "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "ConfigMap"}],
            }},
        });
        let bytes = document_proto(&doc);
        let back = proto::Document::decode(bytes.as_slice()).expect("decodes");
        let defs = back.definitions.expect("definitions").additional_properties;
        let cm = defs[0].value.clone().expect("schema");
        assert_eq!(defs[0].name, "io.k8s.api.core.v1.ConfigMap");
        assert_eq!(cm.r#type.expect("type").value, vec!["object"]);
        assert_eq!(cm.required, vec!["data"]);
        assert_eq!(cm.vendor_extension[0].name, "x-kubernetes-group-version-kind");
        let gvk: Value = serde_json::from_str(&cm.vendor_extension[0].value.clone().expect("any").yaml).expect("yaml");
        assert_eq!(gvk[0]["kind"], "ConfigMap");
        let path = &back.paths.expect("paths").path[0];
        let patch = path.value.clone().expect("item").patch.expect("patch");
        let names: Vec<String> = patch
            .parameters
            .iter()
            .filter_map(|p| match &p.oneof {
                Some(proto::parameters_item::Oneof::Parameter(proto::Parameter {
                    oneof:
                        Some(proto::parameter::Oneof::NonBodyParameter(proto::NonBodyParameter {
                            oneof: Some(proto::non_body_parameter::Oneof::QueryParameterSubSchema(q)),
                        })),
                })) => Some(q.name.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(names, vec!["fieldValidation"]);
        assert!(patch.vendor_extension.iter().any(|e| e.name == "x-kubernetes-group-version-kind"));
    }
}
