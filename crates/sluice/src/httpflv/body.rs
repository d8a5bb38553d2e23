//! The HTTP-FLV response body: hyper pulls the next batch of tags only when it has room to
//! write it (its write buffer is bounded), so a player that reads slowly waits in the stream's
//! ring, where it skips to a keyframe, and nothing is queued for it here. A body written
//! directly ([`super::direct`]) gives hyper nothing and ends when the player does.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::Frame;

use super::player::FlvPlayer;

/// The player's next bytes being made (the player moves into the future and comes back).
type Next = Pin<Box<dyn Future<Output = (FlvPlayer, Option<Bytes>)> + Send>>;

/// A body of live FLV: pulled by hyper (chunked), or written directly.
pub(super) struct FlvBody {
    player: Option<FlvPlayer>,
    next: Option<Next>,
    /// The player writing to the socket itself, when it does.
    direct: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl FlvBody {
    pub(super) fn new(player: FlvPlayer) -> Self {
        FlvBody { player: Some(player), next: None, direct: None }
    }

    /// A body that stays pending while `run` writes the player to the socket, and ends with it.
    pub(super) fn direct(run: impl Future<Output = ()> + Send + 'static) -> Self {
        FlvBody { player: None, next: None, direct: Some(Box::pin(run)) }
    }
}

impl hyper::body::Body for FlvBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(run) = &mut this.direct {
            ready!(run.as_mut().poll(cx));
            // Dropped now: the socket's duplicate is closed before hyper closes the connection.
            this.direct = None;
            return Poll::Ready(None);
        }
        if this.next.is_none() {
            let Some(mut player) = this.player.take() else { return Poll::Ready(None) };
            this.next = Some(Box::pin(async move {
                let bytes = player.next().await;
                (player, bytes)
            }));
        }
        let next = this.next.as_mut().expect("set above");
        let (player, bytes) = ready!(next.as_mut().poll(cx));
        this.next = None;
        match bytes {
            Some(bytes) => {
                this.player = Some(player);
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            // The player is dropped here: the end is reported now, not when the connection goes.
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.player.is_none() && self.next.is_none() && self.direct.is_none()
    }
}
