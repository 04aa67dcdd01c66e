//! A TCP relay in front of Redis that can hold back what Redis sends to
//! subscribers. An instance connected through it receives its invalidation
//! messages late, as every instance does while a message is in flight: the
//! window in which only the writer's own session can tell it about an edit.
//! Everything else (commands, replies) passes straight through.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct PubSubHold {
    pub port: u16,
    held: watch::Sender<bool>,
    accepting: tokio::task::JoinHandle<()>,
}

impl PubSubHold {
    /// Relays to the Redis of `redis_url` (`redis://host:port[/db]`).
    pub async fn start(redis_url: &str) -> Self {
        let upstream = redis_url
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .and_then(|authority| authority.rsplit('@').next())
            .expect("a redis://host:port URL")
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (held, watching) = watch::channel(false);
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream.clone(), watching.clone()));
            }
        });
        Self {
            port,
            held,
            accepting,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// From now on, messages to subscribers wait.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Delivers what waited, and everything after it at once.
    pub fn release(&self) {
        self.held.send_replace(false);
    }
}

impl Drop for PubSubHold {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn relay(client: TcpStream, upstream: String, mut held: watch::Receiver<bool>) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let subscriber = Arc::new(AtomicBool::new(false));
    let marks = subscriber.clone();
    let upward = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        while let Ok(n) = from_client.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            if buffer[..n]
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
            {
                marks.store(true, Ordering::Release);
            }
            if to_server.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        let _ = to_server.shutdown().await;
    };
    let downward = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        while let Ok(n) = from_server.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            if subscriber.load(Ordering::Acquire) {
                while *held.borrow() {
                    if held.changed().await.is_err() {
                        break;
                    }
                }
            }
            if to_client.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        let _ = to_client.shutdown().await;
    };
    tokio::join!(upward, downward);
}
