//! Server-sent events for `"stream": true`: one chunk per commit of the engine, so a streamed
//! token is always final (speculated tokens reach the client only once verified), each chunk
//! carrying the sources of its tokens; then the finish chunk, the usage chunk if asked, and
//! `data: [DONE]`. A failure after the stream began is sent as an `{"error": ...}` event.
//!
//! When the client goes away, the body (and with it the event receiver) is dropped, which
//! stops the worker's generation at its next step.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::error::ApiError;
use crate::request::{Endpoint, Validated};
use crate::response::Header;
use crate::wire::Usage;
use crate::worker::Event;

/// Where a stream is.
enum Phase {
    /// Nothing sent yet (a chat stream opens with the role).
    Start,
    /// Relaying the worker's events.
    Relaying,
    /// `[DONE]` or an error was sent.
    Ended,
}

struct Relay {
    events: UnboundedReceiver<Event>,
    header: Header,
    include_usage: bool,
    /// Characters of token text sent with log-probabilities so far (`text_offset`).
    offset: usize,
    phase: Phase,
}

fn data(value: &impl Serialize) -> Sse {
    Sse::default().data(serde_json::to_string(value).expect("chunks always serialize"))
}

impl Relay {
    /// The SSE events for the next step of the stream; `None` when it is over.
    async fn next(&mut self) -> Option<Vec<Sse>> {
        match self.phase {
            Phase::Ended => None,
            Phase::Start => {
                self.phase = Phase::Relaying;
                Some(match self.header.endpoint {
                    Endpoint::Chat => vec![data(&self.header.role_chunk())],
                    Endpoint::Completions => Vec::new(),
                })
            }
            Phase::Relaying => Some(match self.events.recv().await {
                Some(Event::Commit(piece)) => {
                    let offset = self.offset;
                    self.offset += piece
                        .logprobs
                        .iter()
                        .map(|e| e.token.chars().count())
                        .sum::<usize>();
                    vec![data(&self.header.text_chunk(
                        piece.text,
                        piece.source.into_iter().collect(),
                        &piece.logprobs,
                        offset,
                    ))]
                }
                Some(Event::Trace(trace)) => {
                    vec![data(&trace).event(crate::trace::EVENT_NAME)]
                }
                Some(Event::Done(done)) => {
                    self.phase = Phase::Ended;
                    let mut out = Vec::new();
                    if !done.tail.is_empty() {
                        let offset = self.offset;
                        out.push(data(&self.header.text_chunk(
                            done.tail,
                            Vec::new(),
                            &[],
                            offset,
                        )));
                    }
                    out.push(data(&self.header.finish_chunk(done.stop)));
                    if self.include_usage {
                        let usage = Usage::new(done.prompt_tokens, done.completion_tokens);
                        out.push(data(&self.header.usage_chunk(usage)));
                    }
                    out.push(Sse::default().data("[DONE]"));
                    out
                }
                Some(Event::Failed(error)) => {
                    self.phase = Phase::Ended;
                    vec![Sse::default().data(error.json())]
                }
                None => {
                    self.phase = Phase::Ended;
                    let error = ApiError::internal("the worker stopped before the answer ended");
                    vec![Sse::default().data(error.json())]
                }
            }),
        }
    }
}

/// The streaming response for an admitted request.
pub fn respond(header: Header, request: &Validated, events: UnboundedReceiver<Event>) -> Response {
    let relay = Relay {
        events,
        header,
        include_usage: request.include_usage,
        offset: 0,
        phase: Phase::Start,
    };
    let body = stream::unfold(relay, |mut relay| async move {
        let events = relay.next().await?;
        Some((events, relay))
    })
    .flat_map(|events| stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    // Keep-alive comments also reveal a client that left while its request was queued.
    axum::response::Sse::new(body)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(1)))
        .into_response()
}
