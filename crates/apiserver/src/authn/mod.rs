//! Authentication: client certificates signed by the cluster CA (user = CN, groups = O),
//! bearer tokens from a static token file, and service-account tokens (JWTs signed by the
//! cluster, see [`crate::tokens`]). Nothing is served without one of them.

pub mod tokens;

use std::collections::HashMap;
use std::path::Path;

pub use vkube_core::admission::User;

/// The user named by a (CA-verified) client certificate: CN, and O as groups.
pub fn user_from_certificate(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(String::from)).collect();
    Some(User { name, groups, ..Default::default() })
}

/// Checks bearer tokens.
#[derive(Debug, Default)]
pub struct Authenticator {
    tokens: HashMap<String, User>,
}

impl Authenticator {
    /// Load a static token file (CSV: `token,user,uid,"group1,group2"`), if given.
    ///
    /// # Errors
    /// A message naming the line of a malformed file.
    pub fn new(token_file: Option<&Path>) -> Result<Self, String> {
        let mut tokens = HashMap::new();
        if let Some(path) = token_file {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let fields = split_csv(line);
                if fields.len() < 3 || fields[0].is_empty() || fields[1].is_empty() {
                    return Err(format!("{}:{}: expected token,user,uid[,\"groups\"]", path.display(), i + 1));
                }
                let groups = fields
                    .get(3)
                    .map(|g| g.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                    .unwrap_or_default();
                tokens.insert(fields[0].clone(), User { name: fields[1].clone(), groups, ..Default::default() });
            }
        }
        Ok(Authenticator { tokens })
    }

    /// Add a token at run time.
    pub fn add_token(&mut self, token: &str, user: User) {
        self.tokens.insert(token.to_string(), user);
    }

    /// The user a bearer token belongs to.
    pub fn authenticate_token(&self, token: &str) -> Option<User> {
        self.tokens.get(token).cloned()
    }
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_with_groups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.csv");
        std::fs::write(&path, "abc,alice,1,\"dev,ops\"\nxyz,bob,2\n").expect("write");
        let a = Authenticator::new(Some(&path)).expect("loads");
        assert_eq!(
            a.authenticate_token("abc"),
            Some(User { name: "alice".into(), groups: vec!["dev".into(), "ops".into()], ..Default::default() })
        );
        assert_eq!(a.authenticate_token("xyz").map(|u| u.name), Some("bob".into()));
        assert!(a.authenticate_token("nope").is_none());
        std::fs::write(&path, "broken\n").expect("write");
        assert!(Authenticator::new(Some(&path)).is_err());
    }
}
