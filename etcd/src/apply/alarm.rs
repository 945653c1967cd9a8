//! Active alarms (NOSPACE, CORRUPT), persisted in the `meta` column family.

use std::collections::BTreeSet;
use std::sync::RwLock;

use crate::proto::etcdserverpb::{AlarmMember, AlarmType};
use crate::storage::{prefix_end, Batch, Cf, Snapshot, Storage, StorageError};

const PREFIX: &[u8] = b"alarm/";

fn key(member: u64, alarm: i32) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&member.to_be_bytes());
    k.extend_from_slice(&alarm.to_be_bytes());
    k
}

/// The raised alarms `snap` holds, as `(member, alarm type)`.
pub fn stored(snap: &Snapshot<'_>) -> Result<Vec<(u64, i32)>, StorageError> {
    let mut out = Vec::new();
    snap.for_each(Cf::Meta, PREFIX, prefix_end(PREFIX).as_deref(), |k, _| {
        if let Some(a) = parse_key(k) {
            out.push(a);
        }
        true
    })?;
    Ok(out)
}

/// Writes a raised alarm into `batch` (for an imported backup).
pub fn import(batch: &mut Batch<'_>, member: u64, alarm: i32) {
    batch.put(Cf::Meta, &key(member, alarm), &[]);
}

/// `(member, alarm)` of an alarm record's key.
fn parse_key(k: &[u8]) -> Option<(u64, i32)> {
    let rest = k.strip_prefix(PREFIX)?;
    if rest.len() != 12 {
        return None;
    }
    let m = u64::from_be_bytes(rest[..8].try_into().ok()?);
    let a = i32::from_be_bytes(rest[8..].try_into().ok()?);
    Some((m, a))
}

/// The set of raised alarms.
#[derive(Default)]
pub struct Alarms {
    active: RwLock<BTreeSet<(u64, i32)>>,
}

impl Alarms {
    /// Replaces the raised alarms with what `storage` holds (after a snapshot).
    pub fn reload(&self, storage: &Storage) -> Result<(), StorageError> {
        let fresh = Self::load(storage)?;
        let set = fresh.active.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Ok(mut a) = self.active.write() {
            *a = set;
        }
        Ok(())
    }

    /// Loads raised alarms from disk.
    pub fn load(storage: &Storage) -> Result<Self, StorageError> {
        let set = stored(&storage.snapshot())?.into_iter().collect();
        Ok(Alarms {
            active: RwLock::new(set),
        })
    }

    /// Raises an alarm; returns the raised entry.
    pub fn activate(&self, member: u64, alarm: i32, batch: &mut Batch<'_>) -> Vec<AlarmMember> {
        if alarm == AlarmType::None as i32 {
            return vec![];
        }
        batch.put(Cf::Meta, &key(member, alarm), b"");
        if let Ok(mut s) = self.active.write() {
            s.insert((member, alarm));
        }
        vec![AlarmMember {
            member_id: member,
            alarm,
        }]
    }

    /// Clears an alarm; returns the cleared entry if it was raised.
    pub fn deactivate(&self, member: u64, alarm: i32, batch: &mut Batch<'_>) -> Vec<AlarmMember> {
        let removed = self
            .active
            .write()
            .map(|mut s| s.remove(&(member, alarm)))
            .unwrap_or(false);
        if !removed {
            return vec![];
        }
        batch.delete(Cf::Meta, &key(member, alarm));
        vec![AlarmMember {
            member_id: member,
            alarm,
        }]
    }

    /// Every raised alarm, optionally only of one type (`None` type = all).
    pub fn list(&self, alarm: i32) -> Vec<AlarmMember> {
        self.active
            .read()
            .map(|s| {
                s.iter()
                    .filter(|(_, a)| alarm == AlarmType::None as i32 || *a == alarm)
                    .map(|(m, a)| AlarmMember {
                        member_id: *m,
                        alarm: *a,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True when an alarm of this type is raised by any member.
    pub fn is_active(&self, alarm: AlarmType) -> bool {
        self.active
            .read()
            .map(|s| s.iter().any(|(_, a)| *a == alarm as i32))
            .unwrap_or(false)
    }
}
