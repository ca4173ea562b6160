"""Hand-written genotypes shared by tests (not a test module)."""

from kdas.models.genotype import Genotype

# Every registered op; the reduction cell has a `none` edge and a 3-node concat.
EVERY_OP = Genotype(
    normal=(
        ("sep_conv_3x3", 0),
        ("part_aware", 1),
        ("dil_conv_3x3", 0),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("avg_pool_3x3", 3),
        ("part_aware", 4),
        ("sep_conv_3x3", 2),
    ),
    normal_concat=(2, 3, 4, 5),
    reduce=(
        ("skip_connect", 0),
        ("part_aware", 1),
        ("max_pool_3x3", 0),
        ("dil_conv_3x3", 2),
        ("avg_pool_3x3", 1),
        ("sep_conv_3x3", 3),
        ("none", 2),
        ("dil_conv_3x3", 4),
    ),
    reduce_concat=(3, 4, 5),
)

# DARTS-V2 as DARTS publishes it (Python text; the reduce concat as a range).
DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
)

# The dense ops (auto-reid+dense) in the normal cell; in the reduction cell every one of them
# and DARTS' 5x5 separable and dilated convs at stride 2 (edges from inputs 0 and 1).
DENSE_OPS = Genotype(
    normal=(
        ("conv_3x3", 0),
        ("mbconv_3x3_e3", 1),
        ("conv_1x1", 0),
        ("mbconv_5x5_e6", 2),
        ("mbconv_3x3_e3", 3),
        ("conv_3x3", 1),
        ("conv_1x1", 4),
        ("mbconv_5x5_e6", 0),
    ),
    normal_concat=(2, 3, 4, 5),
    reduce=(
        ("conv_3x3", 0),
        ("sep_conv_5x5", 1),
        ("dil_conv_5x5", 0),
        ("conv_1x1", 1),
        ("mbconv_3x3_e3", 0),
        ("mbconv_5x5_e6", 1),
        ("sep_conv_5x5", 3),
        ("dil_conv_5x5", 4),
    ),
    reduce_concat=(2, 3, 4, 5),
)

# DARTS-V1 (first-order DARTS, Liu et al. 2019) as the DARTS code publishes it.
DARTS_V1_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
)

# GDAS_V1 (Dong & Yang, CVPR 2019), DARTS text without the per-edge weights GDAS stores.
GDAS_V1_TEXT = (
    "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1), ('skip_connect', 0), "
    "('sep_conv_5x5', 2), ('sep_conv_3x3', 3), ('skip_connect', 0), ('sep_conv_5x5', 4), "
    "('sep_conv_3x3', 3)], normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_5x5', 2), ('sep_conv_5x5', 1), ('dil_conv_5x5', 2), "
    "('sep_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_5x5', 1)], reduce_concat=range(2, 6))"
)
