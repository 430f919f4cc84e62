//! Microsoft 365 Unified Audit Log records, in every shape they are exported in: the
//! `AuditData` object itself, Search-UnifiedAuditLog / Purview export rows (`AuditData` as a
//! JSON string or PowerShell bag beside `CreationDate`, `UserIds`, `Operations`, …), Graph
//! audit log query records (`auditData` beside camelCase columns) and Sentinel's
//! `OfficeActivity` table columns.

use serde_json::{Map, Value};

use super::fields::{
    bare_ip, digits_to_number, expand_bags, fill_from, first_str, flatten_name_values, name_value,
    normalise_time, parse_bag, parse_embedded, present, set_if_absent,
};

/// Columns beside `AuditData` in Search-UnifiedAuditLog output, the Purview CSV export and
/// Graph's `auditLogQuery` records, and the AuditData member each one stands for when the
/// AuditData lacks it.
const OUTER_COLUMNS: [(&str, &str); 14] = [
    ("CreationDate", "CreationTime"),
    ("UserIds", "UserId"),
    ("Operations", "Operation"),
    ("RecordId", "Id"),
    ("Identity", "Id"),
    ("createdDateTime", "CreationTime"),
    ("operation", "Operation"),
    ("organizationId", "OrganizationId"),
    ("userPrincipalName", "UserId"),
    ("userId", "UserId"),
    ("clientIp", "ClientIPAddress"),
    ("service", "Workload"),
    ("auditLogRecordType", "RecordType"),
    ("id", "Id"),
];

/// Members that Log Analytics (Sentinel) exports as JSON text, or that PowerShell may have
/// turned into property bags.
const EMBEDDED: [&str; 12] = [
    "Folders",
    "OperationProperties",
    "ExtendedProperties",
    "DeviceProperties",
    "AppAccessContext",
    "AffectedItems",
    "Item",
    "Parameters",
    "ModifiedProperties",
    "Actor",
    "Target",
    "DestFolder",
];

/// Normalises one UAL-shaped object; the error says why it is not a usable record.
pub(super) fn normalise(object: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let object = strip_column_suffixes(object);
    let mut event = unwrap_audit_data(object)?;

    expand_bags(&mut event);
    for name in EMBEDDED {
        parse_embedded(&mut event, name);
    }

    // Sentinel OfficeActivity columns.
    fill_from(&mut event, "CreationTime", &["TimeGenerated"]);
    fill_from(&mut event, "Workload", &["OfficeWorkload"]);
    fill_from(&mut event, "OrganizationId", &["OfficeTenantId"]);
    fill_from(&mut event, "Id", &["OfficeId"]);

    // Different record types name the client address differently.
    fill_from(
        &mut event,
        "ClientIPAddress",
        &["ClientIP", "Client_IPAddress", "ActorIpAddress"],
    );
    if let Some(Value::String(ip)) = event.get_mut("ClientIPAddress") {
        *ip = bare_ip(ip);
    }

    // Property lists: OperationProperties (MailAccessType, IsThrottled, …) and
    // ExtendedProperties (UserAgent, RequestType, ResultStatusDetail, … of Entra ID logons).
    flatten_name_values(&mut event, "OperationProperties");
    flatten_name_values(&mut event, "ExtendedProperties");
    if let Some(session) = name_value(&event, "DeviceProperties", "SessionId").cloned() {
        set_if_absent(&mut event, "SessionId", session);
    }

    // The token and session behind the access (Exchange, SharePoint records since 2024).
    if let Some(Value::Object(context)) = event.get("AppAccessContext") {
        let pairs: Vec<(&str, Value)> = [
            ("TokenId", "UniqueTokenId"),
            ("SessionId", "AADSessionId"),
            ("ClientAppId", "ClientAppId"),
        ]
        .into_iter()
        .filter_map(|(to, from)| Some((to, context.get(from)?.clone())))
        .collect();
        for (to, value) in pairs {
            set_if_absent(&mut event, to, value);
        }
    }

    fill_from(&mut event, "AppId", &["ApplicationId"]);
    fill_from(&mut event, "ClientInfoString", &["UserAgent"]);
    fill_from(&mut event, "Reason", &["LogonError"]);

    digits_to_number(&mut event, "OperationCount");
    digits_to_number(&mut event, "RecordType");
    normalise_time(&mut event);

    if first_str(&event, &["Operation"]).is_none() {
        return Err("not a Unified Audit Log record: no Operation".to_owned());
    }
    Ok(event)
}

/// Log Analytics portal exports name columns `TimeGenerated [UTC]`.
fn strip_column_suffixes(object: Map<String, Value>) -> Map<String, Value> {
    if !object
        .keys()
        .any(|k| k.ends_with(" [UTC]") || k.starts_with(' ') || k.ends_with(' '))
    {
        return object;
    }
    let mut out = Map::new();
    for (key, value) in object {
        let name = key.trim();
        let name = name.strip_suffix(" [UTC]").unwrap_or(name).trim_end();
        if !out.contains_key(name) {
            out.insert(name.to_owned(), value);
        }
    }
    out
}

/// When the object carries an `AuditData` (or Graph's `auditData`) member, the parsed
/// AuditData, completed from the outer columns; otherwise the object itself.
fn unwrap_audit_data(mut object: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let key = ["AuditData", "auditData"]
        .into_iter()
        .find(|k| object.contains_key(*k));
    let Some(key) = key else {
        // A whole record given as one PowerShell bag string is handled by the caller (it is
        // not an object); an object with no AuditData is the AuditData itself.
        return Ok(object);
    };
    let audit = object.remove(key).unwrap_or(Value::Null);
    let mut event = match audit {
        Value::Object(map) => map,
        Value::String(text) => parse_audit_text(&text)?,
        Value::Null => return Err(format!("{key} is empty")),
        _ => return Err(format!("{key} is not an object")),
    };
    for (outer, inner) in OUTER_COLUMNS {
        if let Some(value) = object.get(outer) {
            let value = match (inner, value) {
                // `UserIds` may list several users; the first is the actor.
                ("UserId", Value::String(s)) => {
                    Value::String(s.split(',').next().unwrap_or_default().trim().to_owned())
                }
                _ => value.clone(),
            };
            set_if_absent(&mut event, inner, value);
        }
    }
    for (name, value) in object {
        if !event.contains_key(&name) && present(Some(&value)) {
            event.insert(name, value);
        }
    }
    Ok(event)
}

/// Parses AuditData text: JSON, or a PowerShell property bag.
pub(super) fn parse_audit_text(text: &str) -> Result<Map<String, Value>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("AuditData is empty".to_owned());
    }
    if trimmed.starts_with("@{") {
        return parse_bag(trimmed)
            .ok_or_else(|| "AuditData is not a valid property bag".to_owned());
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("AuditData is not a JSON object".to_owned()),
        Err(e) => Err(format!("AuditData is not valid JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(value: Value) -> Result<Map<String, Value>, String> {
        normalise(value.as_object().cloned().unwrap())
    }

    #[test]
    fn mail_items_accessed() {
        let event = norm(json!({
            "CreationTime": "2023-06-15T10:11:12",
            "Id": "5b3a1e9c-0000-4000-8000-000000000001",
            "Operation": "MailItemsAccessed",
            "OrganizationId": "tenant",
            "RecordType": 50,
            "ResultStatus": "Succeeded",
            "UserId": "alice@contoso.com",
            "Workload": "Exchange",
            "ClientIPAddress": "[2001:db8::1]:443",
            "OperationCount": 2,
            "OperationProperties": [
                {"Name": "MailAccessType", "Value": "Bind"},
                {"Name": "IsThrottled", "Value": "False"}
            ],
            "AppAccessContext": {"UniqueTokenId": "tok", "AADSessionId": "sess", "ClientAppId": "app"}
        }))
        .unwrap();
        assert_eq!(event["CreationTime"], "2023-06-15T10:11:12.000000Z");
        assert_eq!(event["ClientIPAddress"], "2001:db8::1");
        assert_eq!(event["MailAccessType"], "Bind");
        assert_eq!(event["IsThrottled"], "False");
        assert_eq!(event["TokenId"], "tok");
        assert_eq!(event["SessionId"], "sess");
        assert_eq!(event["ClientAppId"], "app");
        assert_eq!(event["OperationCount"], 2);
    }

    #[test]
    fn search_output_and_bags() {
        let event = norm(json!({
            "CreationDate": "6/15/2023 10:11:12 AM",
            "UserIds": "bob@contoso.com",
            "Operations": "MailItemsAccessed",
            "RecordType": "ExchangeItemAggregated",
            "ResultIndex": 1,
            "AuditData": "@{CreationTime=2023-06-15T10:11:12; Operation=MailItemsAccessed; OperationCount=3; OperationProperties=System.Object[]; ClientIPAddress=1.2.3.4:5678}"
        }))
        .unwrap();
        assert_eq!(event["Operation"], "MailItemsAccessed");
        assert_eq!(event["UserId"], "bob@contoso.com");
        assert_eq!(event["OperationCount"], 3);
        assert_eq!(event["ClientIPAddress"], "1.2.3.4");
        assert_eq!(event["RecordType"], "ExchangeItemAggregated");
        assert_eq!(event["ResultIndex"], 1);
        assert!(!event.contains_key("AuditData"));

        let outer_only = norm(json!({
            "CreationDate": "/Date(1686823872000)/",
            "Operations": "Send",
            "AuditData": "{\"Workload\":\"Exchange\"}"
        }))
        .unwrap();
        assert_eq!(outer_only["Operation"], "Send");
        assert_eq!(outer_only["CreationTime"], "2023-06-15T10:11:12.000000Z");

        assert!(norm(json!({"Operations": "Send", "AuditData": "{broken"})).is_err());
        assert!(norm(json!({"Operations": "Send", "AuditData": "[1]"})).is_err());
        assert!(norm(json!({"Operations": "Send", "AuditData": ""})).is_err());
        assert!(norm(json!({"UserId": "x"})).is_err());
    }

    #[test]
    fn graph_audit_log_query_records() {
        let event = norm(json!({
            "id": "rec-1",
            "createdDateTime": "2023-06-15T10:11:12Z",
            "auditLogRecordType": "exchangeItemAggregated",
            "operation": "MailItemsAccessed",
            "organizationId": "tenant",
            "userPrincipalName": "alice@contoso.com",
            "clientIp": "192.0.2.4:1000",
            "service": "Exchange",
            "auditData": {"OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}]}
        }))
        .unwrap();
        assert_eq!(event["Operation"], "MailItemsAccessed");
        assert_eq!(event["UserId"], "alice@contoso.com");
        assert_eq!(event["OrganizationId"], "tenant");
        assert_eq!(event["ClientIPAddress"], "192.0.2.4");
        assert_eq!(event["Workload"], "Exchange");
        assert_eq!(event["RecordType"], "exchangeItemAggregated");
        assert_eq!(event["Id"], "rec-1");
        assert_eq!(event["CreationTime"], "2023-06-15T10:11:12.000000Z");
        assert_eq!(event["MailAccessType"], "Bind");
    }

    #[test]
    fn sentinel_columns() {
        let event = norm(json!({
            "TimeGenerated [UTC]": "6/15/2023, 10:11:12.000 AM",
            "OfficeWorkload": "Exchange",
            "OfficeTenantId": "tenant",
            "OfficeId": "id-1",
            "Operation": "MailItemsAccessed",
            "Client_IPAddress": "203.0.113.9:51000",
            "Folders": "[{\"Path\":\"\\\\Inbox\",\"FolderItems\":[{\"InternetMessageId\":\"<a@b>\"}]}]",
            "OperationProperties": "[{\"Name\":\"MailAccessType\",\"Value\":\"Sync\"}]",
            "OperationCount": "1",
        }))
        .unwrap();
        assert_eq!(event["CreationTime"], "2023-06-15T10:11:12.000000Z");
        assert_eq!(event["Workload"], "Exchange");
        assert_eq!(event["OrganizationId"], "tenant");
        assert_eq!(event["Id"], "id-1");
        assert_eq!(event["ClientIPAddress"], "203.0.113.9");
        assert_eq!(event["MailAccessType"], "Sync");
        assert_eq!(event["OperationCount"], 1);
        assert_eq!(
            event["Folders"][0]["FolderItems"][0]["InternetMessageId"],
            "<a@b>"
        );
    }

    #[test]
    fn entra_logon_records() {
        let event = norm(json!({
            "CreationTime": "2023-06-15T10:11:12",
            "Operation": "UserLoginFailed",
            "Workload": "AzureActiveDirectory",
            "RecordType": 15,
            "ClientIP": "198.51.100.4",
            "ApplicationId": "app",
            "LogonError": "InvalidPasswordLoginAttempt",
            "ExtendedProperties": [{"Name": "UserAgent", "Value": "Mozilla/5.0"}],
            "DeviceProperties": [{"Name": "SessionId", "Value": "sess"}]
        }))
        .unwrap();
        assert_eq!(event["ClientIPAddress"], "198.51.100.4");
        assert_eq!(event["AppId"], "app");
        assert_eq!(event["ClientInfoString"], "Mozilla/5.0");
        assert_eq!(event["Reason"], "InvalidPasswordLoginAttempt");
        assert_eq!(event["SessionId"], "sess");
    }
}
