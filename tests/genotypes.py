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
