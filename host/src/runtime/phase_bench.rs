//! The phases of one WASI 0.2 HTTP invocation, one at a time, for `bench/phases.rs` (issue 25's per-phase table):
//! what [`Runtime::invoke_http`] does in one go, cut where each cost begins and ends, with the same calls in the
//! same order. Not an API: each stage owns what the next needs, so a benchmark can build a stage untimed and time
//! only the step to the next one.
//!
//! 1. [`Phases::store`]: the store and its state (WASI, HTTP and edgefn contexts, output buffers, memory limiter,
//!    fair-share pace);
//! 2. [`StoreStage::request`]: the `wasi:http` request and response-outparam resources;
//! 3. [`RequestStage::instantiate`]: a fresh instance from the pre-instance (pool slot, copy-on-write memory image);
//! 4. [`InstanceStage::call`]: the guest's `handle`, which sets its response;
//! 5. [`CalledStage::response`]: the response taken over and its body read to the end;
//! 6. [`ReleaseStage::release`]: the store dropped (the pool slot reset) and the instance slot given back.
#![allow(missing_debug_implementations, reason = "the stages hold wasmtime stores and instances, which have no Debug")]

use super::engines::Abi;
use super::state::InvocationState;
use super::{Invocation, PreparedComponent, Runtime, Slot, SlotKind, loader::HttpPre, phases};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

type Answer = tokio::sync::oneshot::Receiver<Result<http::Response<HyperOutgoingBody>, ErrorCode>>;

/// A WASI 0.2 HTTP component and the invocation it runs with.
pub struct Phases {
    runtime: Runtime,
    pre: ProxyPre<InvocationState>,
    invocation: Invocation,
}

impl Phases {
    /// `None` for a WASI 0.3 component: the per-phase table is of the default, WASI 0.2 path.
    pub fn new(runtime: &Runtime, component: &PreparedComponent, invocation: Invocation) -> Option<Self> {
        match &component.http {
            HttpPre::P2(pre) => Some(Self { runtime: runtime.clone(), pre: pre.clone(), invocation }),
            HttpPre::P3(_) => None,
        }
    }

    /// An instance slot, as a request takes one before it runs.
    pub async fn slot(&self) -> Slot {
        self.runtime.acquire_slot(SlotKind::Request, "bench/phases").await.expect("an instance slot")
    }

    /// Phase 1: a fresh store for the invocation.
    pub fn store(&self) -> StoreStage<'_> {
        let (store, _pace) = self.runtime.new_store(&self.invocation, Abi::P2);
        StoreStage { phases: self, store }
    }
}

/// After phase 1.
pub struct StoreStage<'a> {
    phases: &'a Phases,
    store: Store<InvocationState>,
}

impl<'a> StoreStage<'a> {
    /// Phase 2: the request and its response outparam, as resources of the store.
    pub fn request(mut self, request: http::Request<Bytes>) -> RequestStage<'a> {
        let (sender, answer) = tokio::sync::oneshot::channel();
        let mut http = self.store.data_mut().http();
        let incoming = http.new_incoming_request(Scheme::Http, request.map(Full::new)).expect("incoming request");
        let outparam = http.new_response_outparam(sender).expect("response outparam");
        RequestStage { phases: self.phases, store: self.store, incoming, outparam, answer }
    }
}

/// After phase 2.
pub struct RequestStage<'a> {
    phases: &'a Phases,
    store: Store<InvocationState>,
    incoming: Resource<HostIncomingRequest>,
    outparam: Resource<HostResponseOutparam>,
    answer: Answer,
}

impl<'a> RequestStage<'a> {
    /// Phase 3: a fresh instance.
    pub async fn instantiate(mut self) -> InstanceStage<'a> {
        let proxy = self.phases.pre.instantiate_async(&mut self.store).await.expect("instantiate");
        InstanceStage { request: self, proxy }
    }
}

/// After phase 3.
pub struct InstanceStage<'a> {
    request: RequestStage<'a>,
    proxy: Proxy,
}

impl InstanceStage<'_> {
    /// Phase 4: the guest handles the request.
    pub async fn call(self) -> CalledStage {
        let RequestStage { mut store, incoming, outparam, answer, .. } = self.request;
        let handler = self.proxy.wasi_http_incoming_handler();
        handler.call_handle(&mut store, incoming, outparam).await.expect("the guest's handle");
        CalledStage { store, answer }
    }
}

/// After phase 4.
pub struct CalledStage {
    store: Store<InvocationState>,
    answer: Answer,
}

impl CalledStage {
    /// Phase 5: the response, its body read to the end.
    pub async fn response(self) -> (ReleaseStage, Bytes) {
        let response = self.answer.await.expect("a response").expect("not an error code");
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.expect("the body").to_bytes();
        (ReleaseStage { store: self.store }, body)
    }
}

/// After phase 5.
pub struct ReleaseStage {
    store: Store<InvocationState>,
}

impl ReleaseStage {
    /// Phase 6: the store given back (its pool slot reset), then the instance slot.
    pub fn release(self, slot: Slot) {
        let peak = self.store.data().limits.peak;
        phases::release(self.store, slot, peak);
    }
}
