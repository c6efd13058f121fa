//! File descriptor commands: getfd, closefd, add-fd, remove-fd, query-fdsets (state and
//! semantics in [`crate::fdsets`]).

use super::R;
use crate::{api, fdsets, Cx, Machine};
use qmpkit_qapi::Empty;

pub fn getfd(m: &mut Machine, a: api::Getfd, cx: &mut Cx) -> R<Empty> {
    fdsets::getfd(m, cx, &a.fdname).map(|()| Empty)
}

pub fn closefd(m: &mut Machine, a: api::Closefd, cx: &mut Cx) -> R<Empty> {
    fdsets::closefd(m, cx, &a.fdname).map(|()| Empty)
}

pub fn add_fd(m: &mut Machine, a: api::AddFd, cx: &mut Cx) -> R<api::AddfdInfo> {
    let (fdset_id, fd) = fdsets::add_fd(m, cx, a.fdset_id, a.opaque)?;
    Ok(api::AddfdInfo { fdset_id, fd })
}

pub fn remove_fd(m: &mut Machine, a: api::RemoveFd, _: &mut Cx) -> R<Empty> {
    fdsets::remove_fd(m, a.fdset_id, a.fd).map(|()| Empty)
}

pub fn query_fdsets(m: &mut Machine, _: api::QueryFdsets, _: &mut Cx) -> R<Vec<api::FdsetInfo>> {
    Ok(fdsets::list(m)
        .into_iter()
        .map(|(fdset_id, fds)| api::FdsetInfo {
            fdset_id,
            fds: fds
                .into_iter()
                .map(|(fd, opaque)| api::FdsetFdInfo { fd, opaque })
                .collect(),
        })
        .collect())
}
