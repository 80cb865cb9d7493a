//! The writer's control messages (registration, replays, sweeps, the
//! probe), each applied on its own between batches, in the order they came
//! ([`super::group_commit`] sorts them from the data messages it batches).

use super::batch::Batch;
use super::group_commit::Writer;
use super::writer_msg::Msg;

impl Writer {
    pub(super) fn control(&mut self, m: Msg) {
        match m {
            Msg::Register(t, reply) => {
                let _ = reply.send(self.register(&t));
            }
            // Now as the writer applies it (batches may have gone first):
            // what is due by then may be handed out already.
            Msg::Replay {
                id,
                only,
                dead_only,
                reply,
            } => {
                let _ = reply.send(self.replay(id, only.as_deref(), dead_only, crate::clock::now_ms()));
            }
            Msg::RetryMedia { id, reply } => {
                let _ = reply.send(self.retry_media(id, crate::clock::now_ms()));
            }
            Msg::ReplayDead {
                only,
                checked,
                at,
                reply,
            } => {
                let _ = reply.send(self.replay_dead(only.as_deref(), &checked, at, crate::clock::now_ms()));
            }
            Msg::Sweep {
                route,
                from,
                cutoff_ms,
                reply,
            } => {
                let _ = reply.send(self.sweep_step(route, from, cutoff_ms));
            }
            Msg::MediaSweep { from, cutoff_ms, reply } => {
                let _ = reply.send(self.media_sweep_step(from, cutoff_ms));
            }
            Msg::MediaReleased { digests, reply } => {
                let _ = reply.send(self.media_released(&digests));
            }
            Msg::TaskSweep { cutoff_ms, from, reply } => {
                let _ = reply.send(self.task_sweep_step(cutoff_ms, from));
            }
            Msg::TaskSchedule {
                route,
                after_ms,
                now_ms,
                from,
                reply,
            } => {
                let _ = reply.send(self.task_schedule_step(&route, after_ms, now_ms, from));
            }
            Msg::BringInDue { caps, now_ms, reply } => {
                let _ = reply.send(self.bring_in_due(&caps, now_ms));
            }
            Msg::Probe(reply) => {
                let tree = self.inner.tree.clone();
                let mut b = Batch::new(&tree);
                b.put(b"Vprobe".to_vec(), Vec::new());
                let _ = reply.send(self.commit(b));
            }
            Msg::Append(..)
            | Msg::Record(..)
            | Msg::MediaRecord(..)
            | Msg::VerifiedMedia(..)
            | Msg::Task(..)
            | Msg::Cursor { .. }
            | Msg::Stop => {}
        }
    }
}
