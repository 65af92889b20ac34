//! Service-account tokens: the `serviceaccounts/token` subresource (TokenRequest), the
//! authentication of the JWTs it issues, and the two review APIs that report on them
//! (`SelfSubjectReview` for `kubectl auth whoami`, `TokenReview`).
//!
//! Tokens are ES256 JWTs with kube-apiserver's claims (`iss`, `sub`, `aud`, `exp`, and
//! `kubernetes.io` naming the namespace, service account and bound object), signed by
//! the key in `DIR/pki/sa.key`.
//!
//! # Guarantees
//! A token authenticates only while its signature, issuer, audience and expiry check
//! out, *and* its service account (and bound pod or secret, if any) still exists with the
//! uid the token names: deleting the pod revokes the tokens bound to it.

use crate::authn::User;
use crate::endpoints::RequestContext;
use crate::registry::Registry;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vkube_core::status::{ApiError, Cause};

/// The issuer, and the one audience the API server accepts (kube-apiserver's default).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Default lifetime of a requested token (as kube-apiserver: one hour).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Shortest lifetime a client may ask for (ten minutes).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;

/// Name and uid of an object a token names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectRef {
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
}

/// The `kubernetes.io` claim.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KubernetesClaims {
    /// The service account's namespace.
    pub namespace: String,
    /// The service account.
    pub serviceaccount: ObjectRef,
    /// The pod the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    /// The secret the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
}

/// A token's claims.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// `system:serviceaccount:NS:NAME`.
    pub sub: String,
    /// Audiences.
    pub aud: Vec<String>,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id.
    pub jti: String,
    /// What the token names.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// Signs and checks tokens.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    key_id: String,
}

impl TokenIssuer {
    /// An issuer for a PKCS#8 ECDSA P-256 private key.
    ///
    /// # Errors
    /// A key that does not parse.
    pub fn new(private_key_pem: &str) -> Result<Self, String> {
        let pair = rcgen::KeyPair::from_pem(private_key_pem).map_err(|e| format!("service-account key: {e}"))?;
        let public = pair.public_key_pem();
        let encoding =
            EncodingKey::from_ec_pem(private_key_pem.as_bytes()).map_err(|e| format!("service-account key: {e}"))?;
        let decoding = DecodingKey::from_ec_pem(public.as_bytes()).map_err(|e| format!("service-account key: {e}"))?;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(public.as_bytes());
        let key_id = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, digest);
        Ok(TokenIssuer { encoding, decoding, key_id })
    }

    /// Sign claims.
    ///
    /// # Errors
    /// Signing failed (it does not with a valid key).
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| ApiError::new(500, "InternalError", format!("signing the token: {e}")))
    }

    /// Check a token's signature, issuer and expiry; `audiences` it must name one of.
    pub fn verify(&self, token: &str, audiences: &[&str]) -> Option<Claims> {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(audiences);
        v.validate_nbf = true;
        v.leeway = 60;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).ok().map(|d| d.claims)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map(|t| t.to_string()).unwrap_or_default()
}

async fn uid_of(reg: &Registry, plural: &str, namespace: &str, name: &str) -> Result<Option<String>, ApiError> {
    let res = reg.catalog().find("", "v1", plural).ok_or_else(ApiError::path_not_found)?;
    match reg.get(&res, namespace, name).await {
        Ok(obj) => Ok(obj.pointer("/metadata/uid").and_then(Value::as_str).map(String::from)),
        Err(e) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// The user a service-account token names, if it is valid and what it names still exists.
pub async fn authenticate(reg: &Registry, issuer: &TokenIssuer, token: &str) -> Option<User> {
    if token.split('.').count() != 3 {
        return None;
    }
    let claims = issuer.verify(token, &[ISSUER])?;
    let k = &claims.kubernetes;
    if uid_of(reg, "serviceaccounts", &k.namespace, &k.serviceaccount.name).await.ok()?? != k.serviceaccount.uid {
        return None;
    }
    let mut extra = std::collections::BTreeMap::new();
    if let Some(pod) = &k.pod {
        if uid_of(reg, "pods", &k.namespace, &pod.name).await.ok()?? != pod.uid {
            return None;
        }
        extra.insert("authentication.kubernetes.io/pod-name".to_string(), vec![pod.name.clone()]);
        extra.insert("authentication.kubernetes.io/pod-uid".to_string(), vec![pod.uid.clone()]);
    }
    if let Some(secret) = &k.secret
        && uid_of(reg, "secrets", &k.namespace, &secret.name).await.ok()?? != secret.uid
    {
        return None;
    }
    extra.insert("authentication.kubernetes.io/credential-id".to_string(), vec![format!("JTI={}", claims.jti)]);
    Some(User {
        name: claims.sub.clone(),
        groups: vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{}", k.namespace)],
        extra,
    })
}

fn invalid(name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid("authentication.k8s.io", "TokenRequest", name, causes)
}

/// `POST .../serviceaccounts/NAME/token`: issue a token.
///
/// # Errors
/// 404 for a missing service account or bound object, 409 for a bound object whose uid
/// differs, 422 for a bad request.
pub async fn request(
    ctx: &RequestContext,
    issuer: &TokenIssuer,
    namespace: &str,
    name: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let reg = &ctx.state.registry;
    let req = crate::endpoints::parse_body(&ctx.headers, body)?;
    let spec = req.get("spec").cloned().unwrap_or_else(|| json!({}));
    let sa_uid = uid_of(reg, "serviceaccounts", namespace, name).await?.ok_or_else(|| {
        ApiError::not_found(vkube_core::status::GroupResource { group: "", resource: "serviceaccounts" }, name)
    })?;
    crate::admission::noderestriction::check_token(reg, &ctx.user, namespace, name, &spec).await?;
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            invalid(name, vec![Cause::invalid("spec.expirationSeconds", &v.to_string(), "must be an integer")])
        })?,
    };
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            name,
            vec![Cause::invalid(
                "spec.expirationSeconds",
                &expiration.to_string(),
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    if expiration > (1 << 32) {
        return Err(invalid(
            name,
            vec![Cause::invalid(
                "spec.expirationSeconds",
                &expiration.to_string(),
                "may not specify a duration larger than 2^32 seconds",
            )],
        ));
    }
    let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a.iter().filter_map(Value::as_str).map(String::from).collect(),
        _ => vec![ISSUER.to_string()],
    };
    let mut kubernetes = KubernetesClaims {
        namespace: namespace.to_string(),
        serviceaccount: ObjectRef { name: name.to_string(), uid: sa_uid },
        pod: None,
        secret: None,
    };
    if let Some(bound) = spec.get("boundObjectRef").filter(|b| !b.is_null()) {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or_default();
        let bname = bound.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let plural = match kind {
            "Pod" => "pods",
            "Secret" => "secrets",
            other => {
                return Err(invalid(
                    name,
                    vec![Cause::not_supported("spec.boundObjectRef.kind", other, &["Pod", "Secret"])],
                ));
            }
        };
        let gr = vkube_core::status::GroupResource { group: "", resource: plural };
        let uid = uid_of(reg, plural, namespace, &bname).await?.ok_or_else(|| ApiError::not_found(gr, &bname))?;
        if let Some(want) = bound.get("uid").and_then(Value::as_str).filter(|u| !u.is_empty())
            && want != uid
        {
            return Err(ApiError::conflict(
                gr,
                &bname,
                &format!(
                    "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        let r = ObjectRef { name: bname, uid };
        if kind == "Pod" {
            kubernetes.pod = Some(r);
        } else {
            kubernetes.secret = Some(r);
        }
    }
    let iat = now();
    let claims = Claims {
        iss: ISSUER.into(),
        sub: format!("system:serviceaccount:{namespace}:{name}"),
        aud: audiences.clone(),
        exp: iat + expiration,
        iat,
        nbf: iat,
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes,
    };
    let token = issuer.sign(&claims)?;
    let mut out_spec = spec.clone();
    out_spec["audiences"] = json!(audiences);
    out_spec["expirationSeconds"] = json!(expiration);
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": null},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": rfc3339(claims.exp)},
    }))
}

fn user_info(user: &User) -> Value {
    let mut groups = user.groups.clone();
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    let mut info = json!({"username": user.name, "groups": groups});
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: who the caller is.
pub fn self_subject_review(user: &User) -> Value {
    json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": user_info(user)},
    })
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: whether a token is valid.
///
/// # Errors
/// A body without `spec.token`.
pub async fn token_review(ctx: &RequestContext, issuer: Option<&TokenIssuer>, body: &[u8]) -> Result<Value, ApiError> {
    let req = crate::endpoints::parse_body(&ctx.headers, body)?;
    let Some(token) = req.pointer("/spec/token").and_then(Value::as_str) else {
        return Err(ApiError::invalid("authentication.k8s.io", "TokenReview", "", vec![Cause::required("spec.token")]));
    };
    let user = match ctx.state.authenticator.read().ok().and_then(|a| a.authenticate_token(token)) {
        Some(u) => Some(u),
        None => match issuer {
            Some(i) => authenticate(&ctx.state.registry, i, token).await,
            None => None,
        },
    };
    let mut status = json!({"authenticated": user.is_some(), "audiences": [ISSUER]});
    match &user {
        Some(u) => status["user"] = user_info(u),
        None => status["error"] = json!("invalid bearer token"),
    }
    let mut spec = req.get("spec").cloned().unwrap_or_else(|| json!({}));
    spec.as_object_mut().map(|m| m.remove("token"));
    Ok(json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        let key = rcgen::KeyPair::generate().expect("key").serialize_pem();
        TokenIssuer::new(&key).expect("issuer")
    }

    fn claims(exp_in: i64, aud: &str) -> Claims {
        let t = now();
        Claims {
            iss: ISSUER.into(),
            sub: "system:serviceaccount:ns:sa".into(),
            aud: vec![aud.into()],
            exp: t + exp_in,
            iat: t,
            nbf: t,
            jti: "j".into(),
            kubernetes: KubernetesClaims {
                namespace: "ns".into(),
                serviceaccount: ObjectRef { name: "sa".into(), uid: "u".into() },
                pod: None,
                secret: None,
            },
        }
    }

    #[test]
    fn signed_tokens_verify_and_others_do_not() {
        let i = issuer();
        let c = claims(600, ISSUER);
        let t = i.sign(&c).expect("signs");
        assert_eq!(i.verify(&t, &[ISSUER]), Some(c.clone()));
        // Another key's token, an expired token, a foreign audience, a tampered token.
        assert!(issuer().verify(&t, &[ISSUER]).is_none());
        assert!(i.verify(&i.sign(&claims(-3600, ISSUER)).expect("signs"), &[ISSUER]).is_none());
        assert!(i.verify(&i.sign(&claims(600, "vault")).expect("signs"), &[ISSUER]).is_none());
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        parts[1] = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&claims(6000, ISSUER)).expect("json"),
        );
        assert!(i.verify(&parts.join("."), &[ISSUER]).is_none());
    }
}
