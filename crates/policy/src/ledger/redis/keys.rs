//! The key registry in Redis: each record as JSON under one hash tag (`{keys}`), so every
//! change is one script on one slot, also in a cluster. A revision counter changes with every
//! record, so a replica knows when its cached copy is stale; a key's last use sits beside its
//! record, written without a revision change (only a usage-drained rotation reads it).

use redis::Script;

use super::RedisLedger;
use crate::error::LedgerError;
use crate::keys::KeyRecord;
use crate::time::Timestamp;

const INSERT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[3] == '1' then redis.call('SET', KEYS[2], ARGV[1]) end
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[4])
return 1
";

const UPDATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[2])
return 1
";

const TOUCH: &str = r"
local last = tonumber(redis.call('GET', KEYS[1]) or '-9223372036854775807')
if tonumber(ARGV[1]) > last then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
";

fn decode(id: &str, json: &str, used: Option<i64>) -> Result<KeyRecord, LedgerError> {
    let mut record: KeyRecord = serde_json::from_str(json)
        .map_err(|e| LedgerError::Corrupt(format!("the registry entry of key `{id}`: {e}")))?;
    if let Some(used) = used.map(Timestamp::from_unix) {
        record.last_used = Some(record.last_used.map_or(used, |last| last.max(used)));
    }
    Ok(record)
}

fn encode(record: &KeyRecord) -> Result<String, LedgerError> {
    serde_json::to_string(record).map_err(|e| LedgerError::Corrupt(e.to_string()))
}

impl RedisLedger {
    fn registry_key(&self, part: &str) -> String {
        format!("{}:{{keys}}:{part}", self.prefix)
    }

    pub(in crate::ledger) fn key_insert(&self, record: &KeyRecord) -> Result<(), LedgerError> {
        let json = encode(record)?;
        let hash_key = self.registry_key(&format!("hash:{}", record.hash.as_deref().unwrap_or("")));
        let script = Script::new(INSERT);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.registry_key(&format!("rec:{}", record.id)))
            .key(hash_key)
            .key(self.registry_key("all"))
            .key(self.registry_key("rev"))
            .arg(&record.id)
            .arg(json)
            .arg(if record.hash.is_some() { "1" } else { "0" });
        let added: i64 = self.pool.run(|c| invocation.invoke(c))?;
        if added == 0 {
            return Err(LedgerError::DuplicateKey(record.id.clone()));
        }
        Ok(())
    }

    pub(in crate::ledger) fn key_update(&self, record: &KeyRecord) -> Result<(), LedgerError> {
        let json = encode(record)?;
        let script = Script::new(UPDATE);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.registry_key(&format!("rec:{}", record.id)))
            .key(self.registry_key("rev"))
            .arg(json);
        let changed: i64 = self.pool.run(|c| invocation.invoke(c))?;
        if changed == 0 {
            return Err(LedgerError::UnknownKey(record.id.clone()));
        }
        Ok(())
    }

    pub(in crate::ledger) fn key(&self, id: &str) -> Result<Option<KeyRecord>, LedgerError> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET")
            .arg(self.registry_key(&format!("rec:{id}")))
            .cmd("GET")
            .arg(self.registry_key(&format!("used:{id}")));
        let (json, used): (Option<String>, Option<i64>) = self.pool.run(|c| pipe.query(c))?;
        json.map(|json| decode(id, &json, used)).transpose()
    }

    pub(in crate::ledger) fn keys(&self) -> Result<Vec<KeyRecord>, LedgerError> {
        let ids: Vec<String> = self.pool.run(|c| {
            redis::cmd("SMEMBERS")
                .arg(self.registry_key("all"))
                .query(c)
        })?;
        let mut keys = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(256) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("GET")
                    .arg(self.registry_key(&format!("rec:{id}")))
                    .cmd("GET")
                    .arg(self.registry_key(&format!("used:{id}")));
            }
            let replies: Vec<(Option<String>, Option<i64>)> = self.pool.run(|c| pipe.query(c))?;
            for (id, (json, used)) in chunk.iter().zip(replies) {
                let json = json.ok_or_else(|| {
                    LedgerError::Corrupt(format!("the registry lists key `{id}` but has no record"))
                })?;
                keys.push(decode(id, &json, used)?);
            }
        }
        Ok(keys)
    }

    pub(in crate::ledger) fn keys_revision(&self) -> Result<u64, LedgerError> {
        let revision: Option<u64> = self
            .pool
            .run(|c| redis::cmd("GET").arg(self.registry_key("rev")).query(c))?;
        Ok(revision.unwrap_or(0))
    }

    pub(in crate::ledger) fn key_touch(&self, id: &str, at: Timestamp) -> Result<(), LedgerError> {
        let script = Script::new(TOUCH);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.registry_key(&format!("used:{id}")))
            .arg(at.unix());
        let _: i64 = self.pool.run(|c| invocation.invoke(c))?;
        Ok(())
    }
}
