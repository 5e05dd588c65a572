//! The HTTP context: hands each callback to the worker.

use core::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::worker::{Stream, Worker};

pub struct Http {
    id: u32,
    worker: Rc<Worker>,
    stream: Option<Rc<RefCell<Stream>>>,
}

impl Http {
    pub fn new(id: u32, worker: Rc<Worker>) -> Self {
        Http {
            id,
            worker,
            stream: None,
        }
    }
}

impl Context for Http {
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

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.worker.on_request_headers(self.id, &mut self.stream)
    }

    fn on_log(&mut self) {
        if let Some(stream) = &self.stream {
            self.worker.on_stream_end(self.id, stream);
        }
    }
}
