//! Spans of the work done for a sampled request (OpenTelemetry): the broker starts a
//! request's span and runs the request inside its context; storage code below starts a
//! child with [`SpanGuard::child`] only when that context is sampled, so that unsampled
//! requests (and a broker with tracing off) pay one thread-local read per call site.

use std::future::Future;

use opentelemetry::trace::{FutureExt, Status, TraceContextExt, Tracer};
use opentelemetry::{global, Context, KeyValue, Value};

/// The tracer's name (the instrumentation scope of every span).
pub const TRACER: &str = "stratus";

/// A span that ends when dropped; empty (and free) when the request is not sampled.
#[derive(Default)]
pub struct SpanGuard(Option<Context>);

impl SpanGuard {
    /// A child of the current context's span named `name`, if that span is sampled.
    pub fn child(name: &'static str) -> Self {
        let cx = Context::current();
        if !cx.span().span_context().is_sampled() {
            return SpanGuard(None);
        }
        Self::child_of(name, &cx)
    }

    /// A child of `parent`'s span, if it is sampled.
    pub fn child_of(name: &'static str, parent: &Context) -> Self {
        if !parent.span().span_context().is_sampled() {
            return SpanGuard(None);
        }
        let span = global::tracer(TRACER).start_with_context(name, parent);
        SpanGuard(Some(parent.with_span(span)))
    }

    /// Wraps a context whose span this guard ends.
    pub fn from_context(cx: Context) -> Self {
        SpanGuard(Some(cx))
    }

    /// Whether this span records (its request is sampled).
    pub fn is_recording(&self) -> bool {
        self.0.is_some()
    }

    /// Its context, for work that should be its children.
    pub fn context(&self) -> Option<&Context> {
        self.0.as_ref()
    }

    /// Sets an attribute.
    pub fn set(&self, key: &'static str, value: impl Into<Value>) {
        if let Some(cx) = &self.0 {
            cx.span().set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed, with the error's text.
    pub fn fail(&self, error: &dyn std::fmt::Display) {
        if let Some(cx) = &self.0 {
            cx.span().set_status(Status::error(error.to_string()));
        }
    }

    /// Runs `f` with this span as the current context (as is, when not sampled).
    pub async fn run<F: Future>(&self, f: F) -> F::Output {
        match &self.0 {
            Some(cx) => f.with_context(cx.clone()).await,
            None => f.await,
        }
    }
}

impl Drop for SpanGuard {
    fn drop(&mut self) {
        if let Some(cx) = self.0.take() {
            cx.span().end();
        }
    }
}

/// The current context, if its span is sampled (to carry across a queue or a task).
pub fn sampled_context() -> Option<Context> {
    let cx = Context::current();
    cx.span().span_context().is_sampled().then_some(cx)
}
