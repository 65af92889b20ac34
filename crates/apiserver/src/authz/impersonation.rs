//! `Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` and `Impersonate-Extra-*`
//! (`kubectl --as`, `--as-group`, `--as-uid`): the requester must be allowed the
//! `impersonate` verb on each identity it takes (users, groups, serviceaccounts,
//! `authentication.k8s.io` uids and userextras/KEY), and the request then runs as that
//! identity — kube-apiserver's impersonation filter, with its refusals.

use super::{Attributes, Authorizer};
use http::HeaderMap;
use std::collections::BTreeMap;
use vkube_core::admission::User;
use vkube_core::status::ApiError;

/// The identity a request asks to act as, if it asks.
struct Requested {
    user: Option<String>,
    groups: Vec<String>,
    uid: Option<String>,
    extra: BTreeMap<String, Vec<String>>,
}

fn requested(headers: &HeaderMap) -> Result<Option<Requested>, ApiError> {
    let text = |v: &http::HeaderValue| {
        v.to_str().map(str::to_string).map_err(|_| ApiError::bad_request("invalid impersonation header value"))
    };
    let user = headers.get("impersonate-user").map(text).transpose()?;
    let groups = headers.get_all("impersonate-group").iter().map(text).collect::<Result<Vec<_>, _>>()?;
    let uid = headers.get("impersonate-uid").map(text).transpose()?;
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
            let key = percent_decode(key).to_lowercase();
            extra.entry(key).or_default().push(text(value)?);
        }
    }
    if user.is_none() && groups.is_empty() && uid.is_none() && extra.is_empty() {
        return Ok(None);
    }
    if user.as_deref().is_none_or(str::is_empty) {
        let quoted = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
        let extra_text = if extra.is_empty() {
            "map[string][]string(nil)".to_string()
        } else {
            let pairs: Vec<String> = extra.iter().map(|(k, v)| format!("{k:?}:[]string{{{}}}", quoted(v))).collect();
            format!("map[string][]string{{{}}}", pairs.join(", "))
        };
        let groups_text =
            if groups.is_empty() { "[]string(nil)".to_string() } else { format!("[]string{{{}}}", quoted(&groups)) };
        return Err(ApiError::bad_request(format!(
            "requested &user.DefaultInfo{{Name:\"\", UID:{:?}, Groups:{groups_text}, Extra:{extra_text}}} without impersonating a user name",
            uid.clone().unwrap_or_default()
        )));
    }
    Ok(Some(Requested { user, groups, uid, extra }))
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("k={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

fn impersonate(requester: &User, group: &str, resource: &str, sub: &str, namespace: &str, name: &str) -> Attributes {
    Attributes {
        user: requester.clone(),
        verb: "impersonate".into(),
        resource_request: true,
        namespace: namespace.into(),
        api_group: group.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        subresource: sub.into(),
        name: name.into(),
        ..Default::default()
    }
}

/// The user a request acts as: the authenticated one, or the one it impersonates if the
/// authenticated one may.
///
/// # Errors
/// 400 for impersonation headers without a user, 403 for an identity the requester may
/// not take, worded as kube-apiserver does.
pub fn resolve(
    authz: &Authorizer,
    requester: User,
    target: &Attributes,
    headers: &HeaderMap,
) -> Result<User, ApiError> {
    let Some(want) = requested(headers)? else { return Ok(requester) };
    let name = want.user.clone().unwrap_or_default();
    let sa = name.strip_prefix("system:serviceaccount:").and_then(|rest| rest.split_once(':'));
    let mut checks = Vec::new();
    match sa {
        Some((ns, sa_name)) => checks.push(impersonate(&requester, "", "serviceaccounts", "", ns, sa_name)),
        None => checks.push(impersonate(&requester, "", "users", "", "", &name)),
    }
    for g in &want.groups {
        checks.push(impersonate(&requester, "", "groups", "", "", g));
    }
    for (key, values) in &want.extra {
        for v in values {
            checks.push(impersonate(&requester, "authentication.k8s.io", "userextras", key, "", v));
        }
    }
    if let Some(uid) = &want.uid {
        checks.push(impersonate(&requester, "authentication.k8s.io", "uids", "", "", uid));
    }
    for check in &checks {
        let d = authz.authorize(check);
        if d.allowed {
            continue;
        }
        // kube-apiserver 1.36 tries constrained impersonation first; a requester holding no
        // `impersonate` grant at all is told of the constrained verb on the request itself.
        let holds_legacy = {
            let snapshot = authz.snapshot();
            let (rules, _) = snapshot.rules_for(&requester, &check.namespace);
            rules.iter().any(|r| r.verbs.iter().any(|v| v == "impersonate" || v == "*"))
        };
        if holds_legacy {
            return Err(check.forbidden(&d.reason));
        }
        let mode = if sa.is_some() { "serviceaccount" } else { "user-info" };
        let mut constrained = target.as_user(requester.clone());
        constrained.verb = format!("impersonate-on:{mode}:{}", target.verb);
        return Err(constrained.forbidden(&d.reason));
    }
    let mut groups = want.groups.clone();
    if let Some((ns, _)) = sa
        && groups.is_empty()
    {
        groups = vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}")];
    }
    if name == "system:anonymous" {
        if !groups.iter().any(|g| g == "system:unauthenticated") {
            groups.push("system:unauthenticated".into());
        }
    } else if !groups.iter().any(|g| g == "system:authenticated" || g == "system:unauthenticated") {
        groups.push("system:authenticated".into());
    }
    Ok(User { name, groups, extra: want.extra })
}
