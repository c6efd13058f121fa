//! Typed handlers: a server for the trait that `qmpkit schema codegen` generates.
//!
//! The generated `register_commands` hands each command to a [`TypedRegistry`], which
//! registers a handler in a [`Registry`] that decodes the (already validated) arguments into
//! the command's struct, calls the implementation's method with the [`Call`] as context (its
//! `args` taken) and encodes what the method returns. A method the implementation leaves out
//! answers `CommandNotFound` ("The command X has no implementation"), or, after
//! [`TypedRegistry::synthesize`], a reply synthesised from the command's return type, as the
//! server does for commands without a handler.
//!
//! ```ignore
//! struct Daemon;
//! impl qapi::Commands<qmpkit_server::Call> for Daemon {
//!     async fn query_status(&self, _: qapi::QueryStatus, _: Call) -> Reply<qapi::StatusInfo> { … }
//! }
//! let mut registry = Registry::new();
//! qapi::register_commands(&mut TypedRegistry::new(&mut registry, Arc::new(Daemon)));
//! ```

use std::sync::Arc;

use qmpkit_qapi::server::{HandlerFn, Registrar};
use qmpkit_qapi::Command;
use qmpkit_schema::Schema;
use qmpkit_wire::{ErrorClass, QmpError};
use serde_json::Value;

use crate::handler::{Call, Registry};

/// Registers the commands of a generated trait implementation `S` in a [`Registry`].
pub struct TypedRegistry<'r, S: ?Sized> {
    registry: &'r mut Registry,
    imp: Arc<S>,
    synth: Option<Arc<Schema>>,
}

impl<'r, S: ?Sized + Send + Sync + 'static> TypedRegistry<'r, S> {
    pub fn new(registry: &'r mut Registry, imp: Arc<S>) -> TypedRegistry<'r, S> {
        TypedRegistry {
            registry,
            imp,
            synth: None,
        }
    }

    /// Commands the implementation leaves out answer a value synthesised from their return
    /// type in `schema` (see [`crate::synth`]) instead of an error.
    pub fn synthesize(mut self, schema: Arc<Schema>) -> Self {
        self.synth = Some(schema);
        self
    }
}

fn error_class(class: &str) -> ErrorClass {
    serde_json::from_value(Value::String(class.to_string())).unwrap_or(ErrorClass::GenericError)
}

impl<S: ?Sized + Send + Sync + 'static> Registrar<S, Call> for TypedRegistry<'_, S> {
    fn command<K: Command>(&mut self, handler: HandlerFn<S, K, Call>) {
        let imp = self.imp.clone();
        let synth = self.synth.clone();
        self.registry.register(K::NAME, move |mut call: Call| {
            let imp = imp.clone();
            let synth = synth.clone();
            let args = Value::Object(std::mem::take(&mut call.args));
            let decoded = qmpkit_qapi::decode::<K>(&args);
            async move {
                let args = decoded.map_err(|e| {
                    QmpError::generic(format!(
                        "Arguments of '{}' do not fit its generated type {e}",
                        K::NAME
                    ))
                })?;
                match handler(imp, args, call).await {
                    Ok(r) => serde_json::to_value(r).map_err(|e| {
                        QmpError::generic(format!("Cannot encode the reply of '{}': {e}", K::NAME))
                    }),
                    Err(e) if e.not_implemented => match synth {
                        Some(schema) => {
                            let id = schema.lookup(K::NAME);
                            Ok(match id {
                                Some(id) => crate::synth::synthesize_return(&schema, id),
                                None => Value::Object(Default::default()),
                            })
                        }
                        None => Err(QmpError::new(error_class(&e.class), e.desc)),
                    },
                    Err(e) => Err(QmpError::new(error_class(&e.class), e.desc)),
                }
            }
        });
    }
}
