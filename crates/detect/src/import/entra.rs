//! Entra ID (Azure AD) sign-in logs: Microsoft Graph `signIn` objects (v1.0 and beta), Azure
//! Monitor diagnostic records (`properties` holding the sign-in), and the `SigninLogs` family of
//! Log Analytics tables (PascalCase columns).

use serde_json::{Map, Value};

use super::fields::{bare_ip, first_str, normalise_time, parse_embedded, set_if_absent};

/// UAL `RecordType` of Entra ID sign-ins (`AzureActiveDirectoryStsLogon`).
const RECORD_TYPE_STS_LOGON: u64 = 15;

/// Canonical members and the sign-in members they come from, first present wins. Graph and
/// Azure Monitor use camelCase, Log Analytics PascalCase (where its `TenantId` is the
/// workspace, so `AADTenantId` is used instead).
const MAPPING: [(&str, &[&str]); 8] = [
    (
        "CreationTime",
        &[
            "createdDateTime",
            "CreatedDateTime",
            "time",
            "TimeGenerated",
        ],
    ),
    (
        "UserId",
        &[
            "userPrincipalName",
            "UserPrincipalName",
            "servicePrincipalName",
            "ServicePrincipalName",
            "servicePrincipalId",
            "ServicePrincipalId",
            "userId",
        ],
    ),
    ("AppId", &["appId", "AppId"]),
    (
        "ClientIPAddress",
        &[
            "ipAddress",
            "IPAddress",
            "callerIpAddress",
            "CallerIpAddress",
        ],
    ),
    ("ClientInfoString", &["userAgent", "UserAgent"]),
    (
        "OrganizationId",
        &[
            "tenantId",
            "AADTenantId",
            "resourceTenantId",
            "ResourceTenantId",
            "homeTenantId",
            "HomeTenantId",
        ],
    ),
    (
        "SessionId",
        &["sessionId", "SessionId", "correlationId", "CorrelationId"],
    ),
    (
        "TokenId",
        &["uniqueTokenIdentifier", "UniqueTokenIdentifier"],
    ),
];

/// Members whose presence makes an object a sign-in record.
const SIGN_IN_MARKERS: [&str; 10] = [
    "createdDateTime",
    "CreatedDateTime",
    "time",
    "TimeGenerated",
    "id",
    "Id",
    "correlationId",
    "CorrelationId",
    "userPrincipalName",
    "UserPrincipalName",
];

/// Normalises one sign-in object; the error says why it is not a usable record.
pub(super) fn normalise(mut object: Map<String, Value>) -> Result<Map<String, Value>, String> {
    // Azure Monitor records: the sign-in is in `properties`; its members win over the
    // envelope's (whose `resourceId` is the ARM path of the tenant, for instance).
    parse_embedded(&mut object, "properties");
    match object.remove("properties") {
        Some(Value::Object(properties)) => object.extend(properties),
        Some(other) => {
            object.insert("properties".to_owned(), other);
        }
        None => {}
    }
    for name in ["status", "Status", "LocationDetails", "DeviceDetail"] {
        parse_embedded(&mut object, name);
    }

    if let Some(category) = first_str(&object, &["category", "Category"])
        && !category.to_ascii_lowercase().ends_with("signinlogs")
    {
        return Err(format!("category {category:?} is not a sign-in log"));
    }
    if first_str(&object, &SIGN_IN_MARKERS).is_none() {
        return Err("not a sign-in record: no time, id or user".to_owned());
    }

    let status = ["status", "Status"]
        .iter()
        .find_map(|name| object.get(*name).and_then(Value::as_object));
    let (succeeded, code) = match status.and_then(|s| s.get("errorCode")).and_then(outcome) {
        Some(found) => found,
        None => ["resultType", "ResultType"]
            .iter()
            .find_map(|name| object.get(*name).and_then(outcome))
            .unwrap_or((None, None)),
    };
    let reason = status
        .and_then(|s| first_str(s, &["failureReason"]))
        .or_else(|| first_str(&object, &["resultDescription", "ResultDescription"]))
        .map(str::to_owned);

    let mut canonical: Vec<(&str, Value)> = Vec::new();
    let operation = if succeeded == Some(false) {
        "UserLoginFailed"
    } else {
        "UserLoggedIn"
    };
    canonical.push(("Operation", Value::from(operation)));
    if let Some(succeeded) = succeeded {
        let status = if succeeded { "Success" } else { "Failure" };
        canonical.push(("ResultStatus", Value::from(status)));
        if !succeeded && let Some(reason) = reason {
            canonical.push(("Reason", Value::from(reason)));
        }
    }
    for (to, from) in MAPPING {
        if let Some(value) = first_str(&object, from) {
            let value = if to == "ClientIPAddress" {
                bare_ip(value)
            } else {
                value.to_owned()
            };
            canonical.push((to, Value::from(value)));
        }
    }
    canonical.push(("Workload", Value::from("AzureActiveDirectory")));
    for (name, value) in canonical {
        object.insert(name.to_owned(), value);
    }
    if let Some(code) = code {
        set_if_absent(&mut object, "ErrorNumber", Value::from(code.to_string()));
    }
    set_if_absent(
        &mut object,
        "RecordType",
        Value::from(RECORD_TYPE_STS_LOGON),
    );
    if let Some(id) = first_str(&object, &["id"]).map(str::to_owned) {
        set_if_absent(&mut object, "Id", Value::from(id));
    }
    normalise_time(&mut object);
    Ok(object)
}

/// Whether a sign-in succeeded, and its error code, from `status.errorCode` or `resultType`
/// (a number, a string of digits, or `Success`/`Failure`).
fn outcome(value: &Value) -> Option<(Option<bool>, Option<i64>)> {
    let code = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let s = s.trim();
            if s.eq_ignore_ascii_case("success") || s.eq_ignore_ascii_case("succeeded") {
                return Some((Some(true), None));
            }
            if s.eq_ignore_ascii_case("failure") || s.eq_ignore_ascii_case("failed") {
                return Some((Some(false), None));
            }
            s.parse::<i64>().ok()
        }
        _ => None,
    }?;
    Some((Some(code == 0), Some(code)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(value: Value) -> Result<Map<String, Value>, String> {
        normalise(value.as_object().cloned().unwrap())
    }

    #[test]
    fn graph_sign_in() {
        let event = norm(json!({
            "id": "66ea54eb-6301-4ee5-be62-ff5a759b0100",
            "createdDateTime": "2023-06-15T10:11:12Z",
            "userPrincipalName": "alice@contoso.com",
            "userId": "d7cc485d-2c1b-422c-98fd-5ce52859a4a3",
            "appId": "de8bc8b5-d9f9-48b1-a8ad-b748da725064",
            "ipAddress": "2001:DB8::5",
            "status": {"errorCode": 50126, "failureReason": "Invalid username or password."},
            "correlationId": "corr",
            "uniqueTokenIdentifier": "utid",
            "userAgent": "Mozilla/5.0",
            "resourceTenantId": "tenant"
        }))
        .unwrap();
        assert_eq!(event["Operation"], "UserLoginFailed");
        assert_eq!(event["ResultStatus"], "Failure");
        assert_eq!(event["Reason"], "Invalid username or password.");
        assert_eq!(event["ErrorNumber"], "50126");
        assert_eq!(event["UserId"], "alice@contoso.com");
        assert_eq!(event["userId"], "d7cc485d-2c1b-422c-98fd-5ce52859a4a3");
        assert_eq!(event["ClientIPAddress"], "2001:db8::5");
        assert_eq!(event["SessionId"], "corr");
        assert_eq!(event["TokenId"], "utid");
        assert_eq!(event["OrganizationId"], "tenant");
        assert_eq!(event["ClientInfoString"], "Mozilla/5.0");
        assert_eq!(event["Workload"], "AzureActiveDirectory");
        assert_eq!(event["RecordType"], 15);
        assert_eq!(event["Id"], "66ea54eb-6301-4ee5-be62-ff5a759b0100");
        assert_eq!(event["CreationTime"], "2023-06-15T10:11:12.000000Z");
    }

    #[test]
    fn azure_monitor_and_log_analytics() {
        let event = norm(json!({
            "time": "2023-06-15T10:11:12.5Z",
            "tenantId": "tenant",
            "category": "NonInteractiveUserSignInLogs",
            "resultType": "0",
            "callerIpAddress": "192.0.2.1",
            "resourceId": "/tenants/tenant/providers/Microsoft.aadiam",
            "properties": {"userPrincipalName": "bob@contoso.com", "resourceId": "res", "sessionId": "sess"}
        }))
        .unwrap();
        assert_eq!(event["Operation"], "UserLoggedIn");
        assert_eq!(event["ResultStatus"], "Success");
        assert!(!event.contains_key("Reason"));
        assert_eq!(event["resourceId"], "res");
        assert_eq!(event["SessionId"], "sess");
        assert_eq!(event["CreationTime"], "2023-06-15T10:11:12.500000Z");
        assert!(!event.contains_key("properties"));

        let la = norm(json!({
            "TimeGenerated": "6/15/2023, 10:11:12.000 AM",
            "UserPrincipalName": "carol@contoso.com",
            "TenantId": "workspace",
            "AADTenantId": "tenant",
            "ResultType": "50074",
            "ResultDescription": "Strong Authentication is required.",
            "Status": "{\"errorCode\":50074,\"failureReason\":\"Strong Authentication is required.\"}",
            "IPAddress": "198.51.100.7",
        }))
        .unwrap();
        assert_eq!(la["Operation"], "UserLoginFailed");
        assert_eq!(la["OrganizationId"], "tenant");
        assert_eq!(la["Reason"], "Strong Authentication is required.");
        assert_eq!(la["CreationTime"], "2023-06-15T10:11:12.000000Z");

        assert!(norm(json!({"category": "AuditLogs", "time": "x"})).is_err());
        assert!(norm(json!({"foo": 1})).is_err());
    }
}
