//! Network: netdev_add / netdev_del, set_link, query-rx-filter, the rocker queries, and the
//! guest's receive filter through test control (__org.qmpkit_guest-rx-filter).

use super::R;
use crate::api;
use crate::net;
use crate::{Cx, Machine};
use qmpkit_qapi::Empty;

pub fn netdev_add(m: &mut Machine, a: api::NetdevAdd, cx: &mut Cx) -> R<Empty> {
    net::netdev_add(m, &a.0, cx).map(|()| Empty)
}

pub fn netdev_del(m: &mut Machine, a: api::NetdevDel, _: &mut Cx) -> R<Empty> {
    net::netdev_del(m, &a.id).map(|()| Empty)
}

/// `announce-self`: the announcements are frames on the guest's networks, of which nothing
/// shows through the monitor (in QEMU either); the machine sends none.
pub fn announce_self(_: &mut Machine, _: api::AnnounceSelf, _: &mut Cx) -> R<Empty> {
    Ok(Empty)
}

pub fn set_link(m: &mut Machine, a: api::SetLink, _: &mut Cx) -> R<Empty> {
    net::set_link(m, &a.name, a.up).map(|()| Empty)
}

pub fn query_rx_filter(
    m: &mut Machine,
    a: api::QueryRxFilter,
    _: &mut Cx,
) -> R<Vec<api::RxFilterInfo>> {
    net::query_rx_filter(m, a.name.as_deref())
}

pub fn guest_rx_filter(m: &mut Machine, a: api::OrgQmpkitGuestRxFilter, _: &mut Cx) -> R<Empty> {
    net::guest_rx_filter(m, a).map(|()| Empty)
}

pub fn query_rocker(m: &mut Machine, a: api::QueryRocker, _: &mut Cx) -> R<api::RockerSwitch> {
    net::rocker::switch(m, &a.name)
}

pub fn query_rocker_ports(
    m: &mut Machine,
    a: api::QueryRockerPorts,
    _: &mut Cx,
) -> R<Vec<api::RockerPort>> {
    net::rocker::ports(m, &a.name)
}

pub fn query_rocker_of_dpa_flows(
    m: &mut Machine,
    a: api::QueryRockerOfDpaFlows,
    _: &mut Cx,
) -> R<Vec<api::RockerOfDpaFlow>> {
    net::rocker::flows(m, &a.name, a.tbl_id)
}

pub fn query_rocker_of_dpa_groups(
    m: &mut Machine,
    a: api::QueryRockerOfDpaGroups,
    _: &mut Cx,
) -> R<Vec<api::RockerOfDpaGroup>> {
    net::rocker::groups(m, &a.name, a.r#type)
}
