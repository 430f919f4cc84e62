//! The issuance ledger's writer: concurrent issuances are batched into one insert and one
//! commit (group commit, as the audit log does), and each caller is answered only once its
//! row is committed. With SQLite this is what lets thousands of grants per second share a
//! single writer.

use keyscope_store::{IssuedToken, Store};
use tokio::sync::{mpsc, oneshot};

use crate::IdentityError;

/// Most rows committed together.
const MAX_BATCH: usize = 256;

type Request = (IssuedToken, oneshot::Sender<Result<(), String>>);

/// A handle to the ledger writer task.
#[derive(Debug, Clone)]
pub struct Ledger {
    requests: mpsc::UnboundedSender<Request>,
}

impl Ledger {
    /// Starts the writer on the current tokio runtime.
    pub fn start(store: Store) -> Ledger {
        let (requests, mut queue) = mpsc::unbounded_channel::<Request>();
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (rows, waiters): (Vec<IssuedToken>, Vec<_>) = batch.into_iter().unzip();
                let result = store
                    .record_issued_many(&rows)
                    .await
                    .map_err(|e| e.to_string());
                for waiter in waiters {
                    let _ = waiter.send(result.clone());
                }
            }
        });
        Ledger { requests }
    }

    /// Records one issued token; returns once it is committed.
    pub async fn record(&self, token: IssuedToken) -> Result<(), IdentityError> {
        let (done, wait) = oneshot::channel();
        self.requests
            .send((token, done))
            .map_err(|_| IdentityError::Store("the ledger writer has stopped".to_owned()))?;
        wait.await
            .map_err(|_| IdentityError::Store("the ledger writer has stopped".to_owned()))?
            .map_err(IdentityError::Store)
    }
}
