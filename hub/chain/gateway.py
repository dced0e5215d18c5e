"""The chain service: hub-authenticated JSON-RPC in front of the chain node.

Users may read the chain and send signed transactions; node-control methods (anvil_*, evm_*, personal
accounts) are for admins, since on a dev chain they can mint balances or rewrite history.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import Body, Depends, FastAPI, HTTPException

from hub.auth import HubUser, current_user
from hub.chain.ipc import IPCError, ipc_request_async
from hub.chain.supervisor import AnvilSupervisor, embedded_anvil
from hub.ledger.provider import is_ipc
from hub.service_app import ServiceApp
from hub.settings import Settings

USER_METHODS = frozenset(
    {
        "eth_chainId",
        "net_version",
        "web3_clientVersion",
        "eth_syncing",
        "eth_blockNumber",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
        "eth_getBalance",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_getTransactionCount",
        "eth_call",
        "eth_estimateGas",
        "eth_getLogs",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getTransactionByHash",
        "eth_getTransactionReceipt",
        "eth_sendRawTransaction",
    }
)
MAX_BATCH = 100


def rpc_error(request_id: object, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def create_app(settings: Settings) -> FastAPI:
    state: dict[str, object] = {"node": None}
    upstream = settings.chain_rpc_url

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not settings.chain.rpc_url:  # embedded default: this service owns, restarts and persists anvil
            state["node"] = supervisor = embedded_anvil(settings)
            await asyncio.to_thread(supervisor.start)
        state["client"] = httpx.AsyncClient(timeout=30)
        yield
        await state["client"].aclose()
        node = state["node"]
        if isinstance(node, AnvilSupervisor):
            await asyncio.to_thread(node.stop)

    async def upstream_call(payload: object) -> object:
        """Forward one JSON-RPC payload to the node: its IPC socket (embedded anvil) or its URL."""
        if is_ipc(upstream):
            return await ipc_request_async(upstream, payload)
        answer = await state["client"].post(upstream, json=payload)
        return answer.json()

    async def health() -> dict:
        node = state["node"]
        if isinstance(node, AnvilSupervisor) and not node.healthy:
            return {"status": "unavailable", "reason": node.status.message or "anvil is starting"} | node.as_dict()
        try:
            answer = await upstream_call({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
            chain_id = int(answer["result"], 16)  # type: ignore[index]
        except (httpx.HTTPError, IPCError, KeyError, TypeError, ValueError) as err:
            return {"status": "unavailable", "reason": f"the chain node does not answer: {err}"}
        if chain_id != settings.chain.chain_id:
            return {
                "status": "misconfigured",
                "reason": f"node chain id {chain_id} != settings {settings.chain.chain_id}",
            }
        extra = node.as_dict() if isinstance(node, AnvilSupervisor) else {}
        return {"chain_id": chain_id, "embedded": not settings.chain.rpc_url} | extra

    service = ServiceApp("chain", health=health, lifespan=lifespan, settings=settings)  # settings: the body limits

    async def forward(call: dict, user: HubUser) -> dict:
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return rpc_error(None, -32600, "invalid JSON-RPC request")
        if call["method"] not in USER_METHODS and not user.admin:
            return rpc_error(call.get("id"), -32601, f"method {call['method']} is for admins only on this gateway")
        try:
            return await upstream_call(call)  # type: ignore[return-value]
        except (httpx.HTTPError, IPCError, ValueError) as err:
            return rpc_error(call.get("id"), -32603, f"the chain node did not answer: {err}")

    @service.router.post("/")
    async def json_rpc(payload: dict | list = Body(...), user: HubUser = Depends(current_user)) -> object:
        if isinstance(payload, list):
            if len(payload) > MAX_BATCH:
                raise HTTPException(413, f"at most {MAX_BATCH} calls per batch")
            return [await forward(call, user) for call in payload]
        return await forward(payload, user)

    return service.finish()
