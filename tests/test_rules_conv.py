"""conv_general_dilated in many configurations, against JAX's autodiff and finite differences."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax
from rule_oracle import check_rule, check_transpose

RNG = np.random.default_rng(3)


def conv(**kw):
    def f(x, w):
        return lax.conv_general_dilated(x, w, **kw)

    return f


def arrays(x_shape, w_shape):
    return RNG.standard_normal(x_shape), RNG.standard_normal(w_shape)


NCH = ("NCH", "OIH", "NCH")
CASES = {
    "basic_1d": (conv(window_strides=(1,), padding="VALID", dimension_numbers=NCH),
                 arrays((2, 3, 7), (4, 3, 3))),
    "stride_pad_1d": (conv(window_strides=(2,), padding=((2, 1),), dimension_numbers=NCH),
                      arrays((2, 3, 8), (4, 3, 3))),
    "negative_pad": (conv(window_strides=(1,), padding=((-1, 2),), dimension_numbers=NCH),
                     arrays((1, 2, 7), (3, 2, 2))),
    "lhs_dilation": (conv(window_strides=(1,), padding=((1, 1),), lhs_dilation=(2,),
                          dimension_numbers=NCH), arrays((2, 2, 5), (3, 2, 3))),
    "rhs_dilation": (conv(window_strides=(2,), padding="SAME", rhs_dilation=(2,),
                          dimension_numbers=NCH), arrays((2, 2, 9), (3, 2, 3))),
    "all_dilations_2d": (
        conv(window_strides=(2, 1), padding=((1, 0), (0, 2)), lhs_dilation=(1, 2),
             rhs_dilation=(2, 1)),
        arrays((2, 2, 6, 5), (3, 2, 2, 3)),
    ),
    "nhwc_2d": (conv(window_strides=(1, 2), padding="SAME",
                     dimension_numbers=("NHWC", "HWIO", "NHWC")),
                arrays((2, 5, 6, 3), (3, 2, 3, 4))),
    "mixed_layouts": (conv(window_strides=(2, 1), padding="VALID",
                           dimension_numbers=("NHWC", "OIHW", "NCHW")),
                      arrays((1, 6, 5, 2), (3, 2, 2, 2))),
    "feature_groups": (conv(window_strides=(1,), padding="SAME", feature_group_count=2,
                            dimension_numbers=NCH), arrays((2, 4, 6), (6, 2, 3))),
    "depthwise_2d": (conv(window_strides=(2, 2), padding="SAME", feature_group_count=3,
                          dimension_numbers=("NHWC", "HWIO", "NHWC")),
                     arrays((1, 5, 5, 3), (3, 3, 1, 3))),
    "batch_groups": (conv(window_strides=(1,), padding="VALID", batch_group_count=2,
                          dimension_numbers=NCH), arrays((4, 3, 6), (4, 3, 2))),
    "batch_groups_strided": (conv(window_strides=(2,), padding=((1, 1),), batch_group_count=3,
                                  rhs_dilation=(2,), dimension_numbers=NCH),
                             arrays((3, 2, 7), (6, 2, 2))),
    "conv_transpose": (
        lambda x, w: lax.conv_transpose(x, w, (2, 2), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")),
        arrays((1, 3, 4, 2), (3, 3, 2, 3)),
    ),
    "conv_transpose_valid": (
        lambda x, w: lax.conv_transpose(x, w, (2,), "VALID", rhs_dilation=(2,),
                                        dimension_numbers=NCH, transpose_kernel=True),
        arrays((2, 3, 4), (3, 2, 2)),
    ),
}  # fmt: skip
SECOND_ORDER = {"feature_groups", "batch_groups_strided"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_conv_rules(name):
    f, args = CASES[name]
    check_rule(f, args, order=2 if name in SECOND_ORDER else 1)


def test_conv_transposes_dot_product():
    x, w = arrays((2, 4, 7), (6, 2, 3))
    f = conv(window_strides=(2,), padding=((1, 2),), lhs_dilation=(2,), rhs_dilation=(2,),
             feature_group_count=2, dimension_numbers=NCH)  # fmt: skip
    check_transpose(lambda x: f(x, w), (x,))
    check_transpose(lambda w: f(x, w), (w,))


@settings(max_examples=3, deadline=None)
@given(
    n=st.integers(3, 7),
    k=st.integers(1, 3),
    s=st.integers(1, 3),
    lo=st.integers(-1, 2),
    hi=st.integers(0, 2),
    ld=st.integers(1, 2),
    rd=st.integers(1, 2),
    groups=st.sampled_from([(1, 1), (2, 1), (1, 2)]),
)
def test_conv_configurations(n, k, s, lo, hi, ld, rd, groups):
    fgc, bgc = groups
    if (n - 1) * ld + 1 + lo + hi < (k - 1) * rd + 1:
        return  # the window does not fit: an empty output
    x, w = arrays((2 * bgc, 2 * fgc, n), (2 * fgc * bgc, 2, k))
    f = conv(window_strides=(s,), padding=((lo, hi),), lhs_dilation=(ld,), rhs_dilation=(rd,),
             feature_group_count=fgc, batch_group_count=bgc, dimension_numbers=NCH)  # fmt: skip
    check_rule(f, (x, w))
