//! Rendered answers by (snapshot generation, path + query): dashboards repeat queries. Least
//! recently used out beyond [`ANSWER_CACHE_BYTES`] of JSON (their lengths summed); a new
//! snapshot generation starts empty.

use serde_json::Value;
use tokio::sync::Mutex;

/// Most JSON bytes of answers kept (held as values, about three times that in memory). A
/// summary over 500 event types is ~15 KB: a thousand of them would have been ~50 MB of a
/// function's memory.
pub const ANSWER_CACHE_BYTES: usize = 4 << 20;

pub struct AnswerCache(Mutex<Answers>);

struct Answers {
    generation: u64,
    lru: lru::LruCache<String, (Value, usize)>,
    bytes: usize,
}

impl Default for AnswerCache {
    fn default() -> Self {
        Self(Mutex::new(Answers {
            generation: 0,
            lru: lru::LruCache::unbounded(),
            bytes: 0,
        }))
    }
}

impl AnswerCache {
    pub async fn get(&self, generation: u64, key: &str) -> Option<Value> {
        let mut answers = self.0.lock().await;
        if answers.generation != generation {
            return None;
        }
        answers.lru.get(key).map(|(v, _)| v.clone())
    }

    pub async fn put(&self, generation: u64, key: String, v: &Value) {
        let size = key.len() + serde_json::to_vec(v).map_or(0, |b| b.len());
        if size > ANSWER_CACHE_BYTES {
            return;
        }
        // Old answers are dropped after the lock is released: freeing many values takes time.
        let mut dropped = Vec::new();
        {
            let mut answers = self.0.lock().await;
            if answers.generation != generation {
                dropped.extend(std::mem::replace(
                    &mut answers.lru,
                    lru::LruCache::unbounded(),
                ));
                answers.generation = generation;
                answers.bytes = 0;
            }
            if let Some((_, (_, old))) = answers.lru.push(key, (v.clone(), size)) {
                answers.bytes -= old;
            }
            answers.bytes += size;
            while answers.bytes > ANSWER_CACHE_BYTES && answers.lru.len() > 1 {
                match answers.lru.pop_lru() {
                    Some((k, (v, n))) => {
                        answers.bytes -= n;
                        dropped.push((k, (v, n)));
                    }
                    None => break,
                }
            }
        }
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// Many large answers (a summary over 2,000 types each): the cache keeps the most recent
    /// ones within its byte budget, and a new generation starts empty.
    #[tokio::test]
    async fn answers_stay_within_their_byte_budget() {
        let cache = AnswerCache::default();
        let big: serde_json::Map<String, Value> = (0..2_000)
            .map(|i| (format!("event_type_{i:05}"), json!(i)))
            .collect();
        let v = json!({ "events_by_type": big });
        let size = serde_json::to_vec(&v).unwrap().len();
        for i in 0..400 {
            cache.put(1, format!("s?{i}"), &v).await;
            let a = cache.0.lock().await;
            assert!(a.bytes <= ANSWER_CACHE_BYTES, "{} bytes", a.bytes);
        }
        let kept = cache.0.lock().await.lru.len();
        assert_eq!(kept, ANSWER_CACHE_BYTES / (size + 5));
        assert!(cache.get(1, "s?399").await.is_some());
        assert!(cache.get(1, "s?0").await.is_none());
        assert!(cache.get(2, "s?399").await.is_none());
        cache.put(2, "s?x".into(), &json!({})).await;
        assert_eq!(cache.0.lock().await.lru.len(), 1);
    }
}
