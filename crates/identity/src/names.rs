//! Syntax of the names operators choose: tenants and usernames. Tenant names become URL path
//! segments, issuers and `tid` claims, so they are kept to a DNS-label-like alphabet.

/// Checks a tenant name: 1–63 characters of `a-z`, `0-9` and `-`, starting with a letter or
/// digit, not ending with `-`, and not `consumers` (the consumer realm's id).
pub fn check_tenant_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || name.len() > 63 || !ok_chars {
        return Err(format!(
            "invalid tenant name {name:?}: use 1 to 63 characters a-z, 0-9 and '-'"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "invalid tenant name {name:?}: it may not start or end with '-'"
        ));
    }
    if name == keyscope_store::CONSUMER_REALM {
        return Err("\"consumers\" is the consumer realm and cannot be a tenant".to_owned());
    }
    Ok(())
}

/// Checks a username: 1–64 characters of letters, digits and `. _ - @ +`.
pub fn check_username(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid username {name:?}: use 1 to 64 characters: letters, digits and . _ - @ +"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names() {
        for good in ["contoso", "a", "fabrikam-2", "0day"] {
            assert!(check_tenant_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Contoso",
            "a/b",
            "-a",
            "a-",
            "consumers",
            "a.b",
            "ä",
            &"a".repeat(64),
        ] {
            assert!(check_tenant_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usernames() {
        assert!(check_username("alice@contoso.example").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username("a b").is_err());
        assert!(check_username("<script>").is_err());
    }
}
