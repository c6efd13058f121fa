//! The generic job interface (`query-jobs`, `job-*`) and the block job verbs of QEMU 2.12's
//! final interface (`block-job-dismiss`, `block-job-finalize`), over the block layer's jobs;
//! and the block graph as `x-debug-query-block-graph` shows it.

use qmpkit_qapi::Empty;
use qmpkit_wire::{ErrorClass, QmpError};

use super::R;
use crate::api;
use crate::block::{self, qerr, BlockState};
use crate::{Cx, Machine};

/// A verb on the job model, with the jobs brought to the machine's time first and their
/// notifications turned into events after.
fn verb(
    m: &mut Machine,
    f: impl FnOnce(&mut BlockState) -> Result<(), qmpkit_block::Error>,
) -> R<Empty> {
    block::catch_up(m);
    let r = f(&mut m.block).map_err(qerr);
    block::pump(m);
    r.map(|()| Empty)
}

/// The block job verbs name only block jobs (not `blockdev-create`'s).
fn block_job(m: &Machine, id: &str) -> R<()> {
    m.block.jobs.require_block_job(id).map_err(|_| {
        QmpError::new(
            ErrorClass::DeviceNotActive,
            format!("Block job '{id}' not found"),
        )
    })
}

pub fn query_jobs(m: &mut Machine, _: api::QueryJobs, _: &mut Cx) -> R<Vec<api::JobInfo>> {
    block::catch_up(m);
    Ok(m.block
        .jobs
        .query_jobs()
        .into_iter()
        .map(|j| api::JobInfo {
            id: j.id,
            r#type: block::job_kind(j.kind),
            status: block::job_status(j.status),
            current_progress: j.current_progress as i64,
            total_progress: j.total_progress as i64,
            error: j.error,
        })
        .collect())
}

pub fn job_pause(m: &mut Machine, a: api::JobPause, _: &mut Cx) -> R<Empty> {
    verb(m, |b| b.jobs.pause(&a.id))
}

pub fn job_resume(m: &mut Machine, a: api::JobResume, _: &mut Cx) -> R<Empty> {
    verb(m, |b| b.jobs.resume(&mut b.graph, &a.id))
}

pub fn job_cancel(m: &mut Machine, a: api::JobCancel, _: &mut Cx) -> R<Empty> {
    verb(m, |b| b.jobs.cancel(&mut b.graph, &a.id, true))
}

pub fn job_complete(m: &mut Machine, a: api::JobComplete, _: &mut Cx) -> R<Empty> {
    verb(m, |b| b.jobs.complete(&mut b.graph, &a.id))
}

pub fn job_finalize(m: &mut Machine, a: api::JobFinalize, _: &mut Cx) -> R<Empty> {
    verb(m, |b| b.jobs.finalize(&mut b.graph, &a.id))
}

pub fn job_dismiss(m: &mut Machine, a: api::JobDismiss, _: &mut Cx) -> R<Empty> {
    verb(m, |b| b.jobs.dismiss(&a.id))
}

pub fn block_job_finalize(m: &mut Machine, a: api::BlockJobFinalize, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    block_job(m, &a.id)?;
    verb(m, |b| b.jobs.finalize(&mut b.graph, &a.id))
}

pub fn block_job_dismiss(m: &mut Machine, a: api::BlockJobDismiss, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    block_job(m, &a.id)?;
    verb(m, |b| b.jobs.dismiss(&a.id))
}

pub fn x_debug_query_block_graph(
    m: &mut Machine,
    _: api::XDebugQueryBlockGraph,
    _: &mut Cx,
) -> R<api::XDbgBlockGraph> {
    use qmpkit_block::graph::GraphNodeType as T;
    use qmpkit_block::Perm;
    block::catch_up(m);
    // The graph-change permission the block layer still checks is not one QEMU reports.
    let perms = |p: &[Perm]| -> Vec<api::BlockPermission> {
        p.iter()
            .filter_map(|p| match p {
                Perm::ConsistentRead => Some(api::BlockPermission::ConsistentRead),
                Perm::Write => Some(api::BlockPermission::Write),
                Perm::WriteUnchanged => Some(api::BlockPermission::WriteUnchanged),
                Perm::Resize => Some(api::BlockPermission::Resize),
                Perm::GraphMod => None,
            })
            .collect()
    };
    let g = m
        .block
        .graph
        .debug_graph_with_jobs(&m.block.jobs.block_job_ids());
    Ok(api::XDbgBlockGraph {
        nodes: g
            .nodes
            .into_iter()
            .map(|n| api::XDbgBlockGraphNode {
                id: n.id,
                r#type: match n.kind {
                    T::BlockBackend => api::XDbgBlockGraphNodeType::BlockBackend,
                    T::BlockJob => api::XDbgBlockGraphNodeType::BlockJob,
                    T::BlockDriver => api::XDbgBlockGraphNodeType::BlockDriver,
                },
                name: n.name,
            })
            .collect(),
        edges: g
            .edges
            .into_iter()
            .map(|e| api::XDbgBlockGraphEdge {
                parent: e.parent,
                child: e.child,
                name: e.name,
                perm: perms(&e.perm),
                shared_perm: perms(&e.shared_perm),
            })
            .collect(),
    })
}
