//! The root context: configuration, the tick, and the fetches it dispatches.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use super::abi;
use super::http::Http;
use super::worker::{Worker, TICK_MS};
use crate::config;

pub struct Root {
    id: u32,
    worker: Rc<Worker>,
}

impl Root {
    pub fn new(id: u32) -> Self {
        Root {
            id,
            worker: Rc::new(Worker::new()),
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.worker
            .on_fetch_response(self.id, token, num_headers, body_size);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = match abi::get_buffer(abi::BUFFER_PLUGIN_CONFIGURATION, 0, size) {
            Ok(b) => b,
            Err(s) => {
                log::error!("tollgate: cannot read the plugin configuration: {s:?}");
                return false;
            }
        };
        match config::parse(&bytes) {
            Ok(c) => {
                log::info!(
                    "tollgate: configured: mode={} providers={} rules={} credential_service={}:{}",
                    c.mode.as_str(),
                    c.providers.len(),
                    c.policy.len(),
                    c.credential_service.protocol.as_str(),
                    c.credential_service.cluster
                );
                self.worker.configure(c);
                if let Err(s) = abi::set_tick_period_ms(TICK_MS) {
                    log::error!("tollgate: cannot set the tick period: {s:?}");
                    return false;
                }
                true
            }
            Err(errors) => {
                for e in errors.iter() {
                    log::error!("tollgate: invalid configuration: {e}");
                }
                log::error!(
                    "tollgate: configuration rejected ({} problem(s))",
                    errors.0.len()
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.worker.on_tick(self.id);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(context_id, self.worker.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
