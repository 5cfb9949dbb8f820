//! The agent's named tasks: any that panics or returns an error is reported by name, so the
//! agent stops with a non-zero exit and its supervisor (systemd `Restart=on-failure`) restarts it.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinError, JoinSet};

/// A task that did not end as it should, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// Which task, as spawned (`probe node1/web`, `dashboard`, `peer API` …).
    pub task: String,
    /// The error it returned, or `panicked: <message>`.
    pub why: String,
}

/// Long-running tasks of one agent, each with a name for the log.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<Result<(), String>>,
    names: HashMap<Id, String>,
}

impl Tasks {
    /// Runs `task`; an `Err` it returns, or a panic, is a failure of `name`.
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        task: impl Future<Output = Result<(), String>> + Send + 'static,
    ) {
        let id = self.set.spawn(task).id();
        self.names.insert(id, name.into());
    }

    /// Waits for the next task to end: `Some(Ok(()))` when it ended normally, `None` when no
    /// task is left. Cancel-safe, so it can sit in a `select!` loop.
    pub async fn next(&mut self) -> Option<Result<(), TaskFailure>> {
        let joined = self.set.join_next_with_id().await?;
        Some(self.outcome(joined))
    }

    fn outcome(
        &mut self,
        joined: Result<(Id, Result<(), String>), JoinError>,
    ) -> Result<(), TaskFailure> {
        let (id, why) = match joined {
            Ok((id, Ok(()))) => {
                self.names.remove(&id);
                return Ok(());
            }
            Ok((id, Err(why))) => (id, why),
            Err(e) => (e.id(), describe(e)),
        };
        let task = self.names.remove(&id).unwrap_or_else(|| "unnamed".into());
        Err(TaskFailure { task, why })
    }
}

/// `panicked: <message>` for a panic (the message as given to `panic!`), else what tokio says.
pub fn describe(error: JoinError) -> String {
    if !error.is_panic() {
        return error.to_string();
    }
    let payload = error.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    format!("panicked: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_or_an_error_is_a_failure_of_the_named_task() {
        let mut tasks = Tasks::default();
        tasks.spawn("fine", async { Ok(()) });
        tasks.spawn("probe n1/web", async {
            // What an unchecked `Instant + Duration` does with a huge interval.
            let big = std::hint::black_box(u64::MAX);
            let _ = std::hint::black_box(big.checked_add(1).expect("overflow"));
            Ok(())
        });
        tasks.spawn("peer API", async { Err("address in use".to_string()) });
        let mut failures = Vec::new();
        let mut normal = 0;
        while let Some(done) = tasks.next().await {
            match done {
                Ok(()) => normal += 1,
                Err(failure) => failures.push(failure),
            }
        }
        failures.sort_by(|a, b| a.task.cmp(&b.task));
        let failure = |task: &str, why: &str| TaskFailure {
            task: task.into(),
            why: why.into(),
        };
        assert_eq!(
            failures,
            [
                failure("peer API", "address in use"),
                failure("probe n1/web", "panicked: overflow")
            ]
        );
        assert_eq!(normal, 1);
        assert!(
            tasks.names.is_empty(),
            "every name is dropped with its task"
        );
    }
}
