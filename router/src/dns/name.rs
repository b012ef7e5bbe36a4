//! DNS names as weft stores them: validated (LDH labels of at most 63 bytes, at most 253 bytes in
//! all), lower-cased, fully qualified with a trailing dot, and inside the weft domain.

use std::fmt;

use super::error::NameError;

/// Longest name, in bytes, written without the trailing dot (RFC 1035 § 2.3.4).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label, in bytes.
pub const MAX_LABEL_LEN: usize = 63;

/// A valid, lower-cased, fully qualified name ending in a dot (`web.weft.local.`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fqdn(String);

impl Fqdn {
    /// Parses `text` (with or without the trailing dot) as a host name.
    pub fn parse(text: &str) -> Result<Fqdn, NameError> {
        let bare = text.strip_suffix('.').unwrap_or(text);
        if bare.is_empty() {
            return Err(NameError::Empty);
        }
        if bare.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong {
                len: bare.len(),
                name: text.to_string(),
            });
        }
        for label in bare.split('.') {
            check_label(label, text)?;
        }
        Ok(Fqdn(format!("{}.", bare.to_ascii_lowercase())))
    }

    /// The name of a workload in `domain`: `name` as is when it already ends in the domain,
    /// else `name.domain`.
    pub fn in_domain(name: &str, domain: &Fqdn) -> Result<Fqdn, NameError> {
        let candidate = Fqdn::parse(name)?;
        if candidate.is_in(domain) {
            return Ok(candidate);
        }
        Fqdn::parse(&format!("{}{}", candidate.0, domain.0))
    }

    /// Whether this name is `domain` itself or below it.
    pub fn is_in(&self, domain: &Fqdn) -> bool {
        self.0 == domain.0
            || self
                .0
                .strip_suffix(domain.0.as_str())
                .is_some_and(|head| head.ends_with('.'))
    }

    /// The name with its trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without `domain` (and the dot before it), as `weft status dns` shows it.
    pub fn short<'a>(&'a self, domain: &Fqdn) -> &'a str {
        self.0
            .strip_suffix(domain.0.as_str())
            .and_then(|head| head.strip_suffix('.'))
            .filter(|head| !head.is_empty())
            .unwrap_or(&self.0)
    }
}

impl fmt::Display for Fqdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_label(label: &str, name: &str) -> Result<(), NameError> {
    let bad = |reason: &'static str| NameError::BadLabel {
        label: label.to_string(),
        name: name.to_string(),
        reason,
    };
    if label.is_empty() {
        return Err(bad("labels cannot be empty (two dots in a row)"));
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(bad("labels are at most 63 bytes"));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(bad("only letters, digits and '-' are allowed"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(bad("a label cannot start or end with '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Fqdn {
        Fqdn::parse("weft.local.").unwrap()
    }

    #[test]
    fn lower_cases_and_qualifies() {
        let n = Fqdn::parse("Web-1.Weft.Local").unwrap();
        assert_eq!(n.as_str(), "web-1.weft.local.");
        assert_eq!(n.short(&domain()), "web-1");
        assert_eq!(
            Fqdn::in_domain("db", &domain()).unwrap().as_str(),
            "db.weft.local."
        );
        assert_eq!(
            Fqdn::in_domain("db.weft.local.", &domain())
                .unwrap()
                .as_str(),
            "db.weft.local."
        );
        assert!(!Fqdn::parse("xweft.local").unwrap().is_in(&domain()));
    }

    #[test]
    fn refuses_bad_names() {
        assert!(matches!(Fqdn::parse(""), Err(NameError::Empty)));
        assert!(matches!(Fqdn::parse("."), Err(NameError::Empty)));
        assert!(matches!(
            Fqdn::parse("a..b"),
            Err(NameError::BadLabel { .. })
        ));
        assert!(matches!(
            Fqdn::parse("under_score"),
            Err(NameError::BadLabel { .. })
        ));
        assert!(matches!(
            Fqdn::parse("-lead"),
            Err(NameError::BadLabel { .. })
        ));
        let long_label = "a".repeat(64);
        let err = Fqdn::parse(&long_label).unwrap_err();
        assert!(err.to_string().contains("63"), "{err}");
        assert!(Fqdn::parse(&"a".repeat(63)).is_ok());
        let long_name = vec!["abcdefghi"; 26].join(".");
        assert_eq!(long_name.len(), 259);
        let err = Fqdn::parse(&long_name).unwrap_err();
        assert!(err.to_string().contains("253"), "{err}");
        let exact = format!("{}.{}", "a".repeat(63), vec!["b".repeat(63); 3].join("."));
        assert_eq!(exact.len(), 255);
        assert!(Fqdn::parse(&exact).is_err());
        assert!(Fqdn::parse(&exact[2..]).is_ok());
    }
}
