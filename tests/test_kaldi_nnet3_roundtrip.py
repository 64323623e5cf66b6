"""Random small x-vector topologies (hypothesis): build -> write -> read -> write is the identity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xvjax.errors import XvjaxError
from xvjax.kaldi.nnet3 import Nnet, parse_descriptor


def _xvector_config(feat_dim, contexts, widths, stats_dim, embed_dims, num_spk, period, use_tdnn):
    """Config lines like xconfig_to_configs.py writes for an x-vector xconfig."""
    lines = [f"input-node name=input dim={feat_dim}"]
    prev, prev_dim = "input", feat_dim
    for i, (ctx, width) in enumerate(zip(contexts, widths, strict=True), 1):
        name = f"tdnn{i}"
        parts = [prev if o == 0 else f"Offset({prev}, {o})" for o in ctx]
        desc = parts[0] if len(parts) == 1 else "Append(" + ", ".join(parts) + ")"
        if use_tdnn and len(ctx) > 1 and i == 1:
            offsets = ",".join(str(o) for o in ctx)
            lines.append(
                f"component name={name}.affine type=TdnnComponent input-dim={prev_dim} "
                f"output-dim={width} time-offsets={offsets} max-change=0.75"
            )
            desc = prev
        else:
            lines.append(
                f"component name={name}.affine type=NaturalGradientAffineComponent "
                f"input-dim={prev_dim * len(ctx)} output-dim={width} max-change=0.75"
            )
        lines += [
            f"component-node name={name}.affine component={name}.affine input={desc}",
            f"component name={name}.relu type=RectifiedLinearComponent dim={width} self-repair-scale=1e-05",
            f"component-node name={name}.relu component={name}.relu input={name}.affine",
            f"component name={name}.batchnorm type=BatchNormComponent dim={width} target-rms=1.0",
            f"component-node name={name}.batchnorm component={name}.batchnorm input={name}.relu",
        ]
        prev, prev_dim = f"{name}.batchnorm", width
    lines += [
        f"component name=stats-extraction type=StatisticsExtractionComponent input-dim={prev_dim} "
        f"input-period={period} output-period={period} include-variance=true",
        f"component-node name=stats-extraction component=stats-extraction input={prev}",
        f"component name=stats-pooling type=StatisticsPoolingComponent input-dim={2 * prev_dim + 1} "
        f"input-period={period} left-context=0 right-context={10000 * period} "
        "num-log-count-features=0 output-stddevs=true",
        "component-node name=stats-pooling component=stats-pooling input=stats-extraction",
    ]
    prev, prev_dim = f"Round(stats-pooling, {period})", 2 * prev_dim
    for j, dim in enumerate(embed_dims, len(contexts) + 1):
        name = f"tdnn{j}"
        lines += [
            f"component name={name}.affine type=NaturalGradientAffineComponent input-dim={prev_dim} output-dim={dim}",
            f"component-node name={name}.affine component={name}.affine input={prev}",
            f"component name={name}.relu type=RectifiedLinearComponent dim={dim}",
            f"component-node name={name}.relu component={name}.relu input={name}.affine",
        ]
        prev, prev_dim = f"{name}.relu", dim
    lines += [
        f"component name=output.affine type=NaturalGradientAffineComponent input-dim={prev_dim} "
        f"output-dim={num_spk} param-stddev=0.0 bias-stddev=0.0 max-change=1.5 learning-rate-factor=0.5",
        f"component-node name=output.affine component=output.affine input={prev}",
        f"component name=output.log-softmax type=LogSoftmaxComponent dim={num_spk}",
        "component-node name=output.log-softmax component=output.log-softmax input=output.affine",
        "output-node name=output input=output.log-softmax objective=linear",
    ]
    return "\n".join(lines)


def _fill_random(nnet: Nnet, rng: np.random.Generator) -> None:
    """Random parameters and statistics everywhere (like a trained model)."""
    for comp in nnet.components.values():
        for key, value in comp.params.items():
            shape = value.shape
            if key in ("value_avg", "deriv_avg", "oderiv_rms"):
                shape = (comp.attrs["dim"],)
            comp.params[key] = rng.standard_normal(shape).astype(np.float32) * np.float32(3)
        if "count" in comp.attrs:
            comp.attrs["count"] = float(rng.uniform(0, 5000))
        if "oderiv_count" in comp.attrs:
            comp.attrs["oderiv_count"] = float(rng.integers(0, 9000))
        if "learning_rate" in comp.attrs:
            comp.attrs["learning_rate"] = float(np.float32(rng.uniform(0, 0.01)))


def make_model(data) -> Nnet:
    config, seed = data
    rng = np.random.default_rng(seed)
    nnet = Nnet()
    nnet.apply_config(config, rng=rng)
    _fill_random(nnet, rng)
    return nnet


@st.composite
def xvector_models(draw):
    feat = draw(st.integers(2, 6))
    contexts = draw(
        st.lists(
            st.lists(st.integers(-3, 3), min_size=1, max_size=4, unique=True).map(sorted),
            min_size=1,
            max_size=3,
        )
    )
    widths = draw(st.lists(st.integers(1, 6), min_size=len(contexts), max_size=len(contexts)))
    embed = draw(st.lists(st.integers(1, 5), min_size=1, max_size=2))
    config = _xvector_config(
        feat, contexts, widths, None, embed, draw(st.integers(2, 5)),
        draw(st.sampled_from([1, 2])), draw(st.booleans()),
    )  # fmt: skip
    return config, draw(st.integers(0, 2**31))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(xvector_models())
def test_random_topology_round_trips(data):
    nnet = make_model(data)
    for binary in (True, False):
        blob = nnet.to_bytes(binary=binary, kaldi_roundtrip=False)
        back = Nnet.from_bytes(blob, "rt")
        assert back.to_bytes(binary=binary, kaldi_roundtrip=False) == blob
        if binary:
            assert back == nnet
    # Kaldi's statistics round trip, applied to a file, gives a readable model of the same graph
    again = Nnet.from_bytes(nnet.to_bytes(binary=True), "kaldi-rt")
    assert [n.config_line() for n in again.nodes] == [n.config_line() for n in nnet.nodes]
    # descriptors print in normal form
    for node in nnet.nodes:
        if node.input is not None and node.kind != "dim-range":
            assert parse_descriptor(str(node.input)) == node.input


def test_init_defaults_match_kaldi_text():
    """Freshly initialised components write Kaldi's default tokens (cf. resized_0.txt)."""
    nnet = Nnet()
    nnet.apply_config(
        "input-node name=input dim=4\n"
        "component name=a type=NaturalGradientAffineComponent input-dim=4 output-dim=3 "
        "param-stddev=0 bias-stddev=0\n"
        "component-node name=a component=a input=input\n"
        "component name=s type=LogSoftmaxComponent dim=3\n"
        "component-node name=s component=s input=a\n"
        "output-node name=output input=s\n"
    )
    text = nnet.to_bytes(binary=False).decode()
    assert (
        "<NaturalGradientAffineComponent> <LearningRate> 0.001 <LinearParams>  [\n  0 0 0 0 \n"
        in text
    )
    assert "<RankIn> 2 <RankOut> 2 <UpdatePeriod> 4 <NumSamplesHistory> 2000 <Alpha> 4 " in text
    assert (
        "<LogSoftmaxComponent> <Dim> 3 <ValueAvg>  [ ]\n<DerivAvg>  [ ]\n<Count> 0 <OderivRms>  [ ]\n"
        "<OderivCount> 0 <NumDimsSelfRepaired> 0 <NumDimsProcessed> 0 </LogSoftmaxComponent> "
    ) in text
    assert "output-node name=output input=s objective=linear\n" in text


def test_config_errors_are_clean():
    base = "input-node name=input dim=4\n"
    bad = [
        (base + "component name=a type=FancyComponent dim=3\n", "FancyComponent"),
        (base + "component name=a type=NoOpComponent dim=4 colour=red\n", "colour=red"),
        (base + "component-node name=a component=zz input=input\n", "no component named 'zz'"),
        (base + "output-node name=output input=Offset(nothere, 1)\n", "nothere"),
        (base + "output-node name=output input=input objective=fancy\n", "objective"),
        (base + "bogus-node name=x\n", "bogus-node"),
        (
            base
            + "component name=a type=NoOpComponent dim=5\ncomponent-node name=a component=a input=input\n"
            + "output-node name=output input=a\n",
            "dimension mismatch",
        ),
    ]
    for config, match in bad:
        with pytest.raises(XvjaxError, match=match):
            Nnet().apply_config(config)


def test_supported_types_round_trip_through_config():
    config = """
    input-node name=input dim=6
    component name=lin type=LinearComponent input-dim=6 output-dim=6 orthonormal-constraint=1.0
    component-node name=lin component=lin input=input
    component name=fix type=FixedAffineComponent input-dim=6 output-dim=6
    component-node name=fix component=fix input=lin
    component name=aff type=AffineComponent input-dim=12 output-dim=4 l2-regularize=0.01
    component-node name=aff component=aff input=Append(fix, Offset(lin, 1))
    component name=drop type=DropoutComponent dim=4 dropout-proportion=0.1
    component-node name=drop component=drop input=aff
    component name=gdrop type=GeneralDropoutComponent dim=4 continuous=true test-mode=true
    component-node name=gdrop component=gdrop input=drop
    component name=noop type=NoOpComponent dim=4 backprop-scale=0.5
    component-node name=noop component=noop input=gdrop
    component name=so type=ScaleAndOffsetComponent dim=4 block-dim=2
    component-node name=so component=so input=noop
    component name=sg type=SumGroupComponent sizes=1,3
    component-node name=sg component=sg input=so
    component name=sm type=SoftmaxComponent dim=2
    component-node name=sm component=sm input=sg
    component name=tdnn type=TdnnComponent input-dim=6 output-dim=2 time-offsets=-1,0,1 use-bias=false
    component-node name=tdnn component=tdnn input=input
    dim-range-node name=dr input-node=lin dim-offset=2 dim=2
    output-node name=output input=Sum(sm, Sum(tdnn, Scale(0.5, dr)))
    """
    nnet = Nnet()
    nnet.apply_config(config, rng=1)
    assert nnet.components["tdnn"].params["bias"].shape == (0,)
    assert nnet.components["sg"].output_dim == 2 and nnet.output_dim("output") == 2
    for binary in (True, False):
        blob = nnet.to_bytes(binary=binary)
        back = Nnet.from_bytes(blob, "rt")
        assert back.to_bytes(binary=binary) == blob
    text = nnet.to_bytes(binary=False).decode()
    assert (
        "output-node name=output input=Sum(sm, Sum(tdnn, Scale(0.5, dr))) objective=linear" in text
    )
    assert (
        "<GeneralDropoutComponent> <Dim> 4 <BlockDim> 4 <TimePeriod> 0 <DropoutProportion> 0.5 <TestMode> <Continuous> </GeneralDropoutComponent>"
        in text
    )
    assert "<L2Regularize> 0.01 <LearningRate> 0.001" in text
    assert "<RankInOut> 3 3 <Alpha> 4" in text
