"""Descriptor parsing and Kaldi's normalisation (nnet-descriptor.cc GetNormalizedDescriptor)."""

from __future__ import annotations

import pytest

from xvjax.errors import XvjaxError
from xvjax.kaldi.nnet3 import (
    Append,
    Const,
    IfDefined,
    NodeRef,
    Offset,
    ReplaceIndex,
    Round,
    Scale,
    Sum,
    node_names,
    parse_descriptor,
)
from xvjax.kaldi.nnet3.descriptors import modulus

NORMAL_FORMS = [
    # (written, Kaldi's normal form)
    ("input", "input"),
    ("Append(Offset(input, -2), input, Offset(input, 2))", None),
    ("Append(Offset(input,-2),input)", "Append(Offset(input, -2), input)"),
    ("Offset(Append(a, b), 1)", "Append(Offset(a, 1), Offset(b, 1))"),
    ("Append(a, Append(b, c))", "Append(a, b, c)"),
    ("Append(a)", "a"),
    ("Offset(Offset(a, 1), 2)", "Offset(a, 3)"),
    ("Offset(Offset(a, 1, 1), -1, -1)", "a"),
    ("Offset(a, 0)", "a"),
    ("Offset(a, 1, 2)", "Offset(a, 1, 2)"),
    ("Offset(a, 1, 0)", "Offset(a, 1)"),
    ("Offset(Sum(a, b), 1)", "Sum(Offset(a, 1), Offset(b, 1))"),
    ("Sum(a, b, c)", "Sum(a, Sum(b, c))"),
    ("Sum(a)", "a"),
    ("Sum(Append(a, b), Append(c, d))", "Append(Sum(a, c), Sum(b, d))"),
    ("Round(Offset(a, 3), 2)", "Round(Offset(a, 3), 2)"),
    ("Round(stats-pooling-0-10000, 1)", None),
    ("Offset(IfDefined(a), -3)", "IfDefined(Offset(a, -3))"),
    ("Failover(Offset(a, 1), b)", None),
    ("Switch(a, b)", None),
    ("Offset(Switch(a, b), 1)", None),
    ("ReplaceIndex(ivector, t, 0)", None),
    ("ReplaceIndex(Sum(a, b), x, 1)", "Sum(ReplaceIndex(a, x, 1), ReplaceIndex(b, x, 1))"),
    ("Scale(2.0, Offset(a, 1))", "Offset(Scale(2, a), 1)"),
    ("Scale(0.5, Scale(2, a))", "a"),
    ("Scale(0.5, Scale(3, a))", "Scale(1.5, a)"),
    ("Scale(2, Sum(a, b))", "Sum(Scale(2, a), Scale(2, b))"),
    ("Scale(0.1, a)", "Scale(0.1, a)"),
    ("Sum(a, Const(1.5, 10))", None),
    ("Append(Const(0, 3), x)", None),
]


@pytest.mark.parametrize("text,normal", NORMAL_FORMS)
def test_normal_form(text, normal):
    desc = parse_descriptor(text)
    assert str(desc) == (normal or text)
    # the normal form is a fixed point
    assert parse_descriptor(str(desc)) == desc


def test_ast_values():
    d = parse_descriptor("Append(Offset(tdnn1, -2), Round(stats, 2), IfDefined(Offset(r, -3)))")
    assert d == Append(
        (
            Offset(NodeRef("tdnn1"), -2),
            Round(NodeRef("stats"), 2),
            IfDefined(Offset(NodeRef("r"), -3)),
        )
    )
    assert node_names(d) == ["tdnn1", "stats", "r"]
    assert modulus(d) == 2
    assert parse_descriptor("ReplaceIndex(iv, t, 0)") == ReplaceIndex(NodeRef("iv"), "t", 0)
    assert parse_descriptor("Sum(Scale(-1, a), Const(2, 4))") == Sum(
        Scale(-1.0, NodeRef("a")), Const(2.0, 4)
    )


@pytest.mark.parametrize(
    "text,match",
    [
        ("Fancy(a, 1)", "unknown descriptor 'Fancy'"),
        ("Offset(a)", "expected ','"),
        ("Offset(a, b)", "expected integer"),
        ("Append(a, b", "expected ',' or '\\)'"),
        ("Round(a, 1) extra", "unexpected 'extra'"),
        ("ReplaceIndex(a, n, 0)", "'t' or 'x'"),
        ("Offset(Const(1, 2), 1)", "Const"),
        ("", "expected a descriptor"),
    ],
)
def test_bad_descriptors_are_clean_errors(text, match):
    with pytest.raises(XvjaxError, match=match):
        parse_descriptor(text, "node tdnn2.affine")
