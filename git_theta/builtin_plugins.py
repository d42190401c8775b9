"""The plugins git-theta ships, by entry-point group: name -> "module:attribute".

setup.py registers exactly these as entry points, like any third-party plugin.
git_theta.plugins also loads them from here without scanning every installed
package's metadata, which costs git's filter ~40 ms at each start. No imports:
setup.py reads this file before the package is installed.
"""

BUILTIN_PLUGINS: dict[str, dict[str, str]] = {
    "git_theta.checkpoints": {
        "safetensors": "git_theta.checkpoints.safetensors:SafetensorsFormat",
        "pytorch": "git_theta.checkpoints.pytorch:PytorchFormat",
        "npz": "git_theta.checkpoints.npz:NpzFormat",
    },
    "git_theta.updates": {
        "dense": "git_theta.updates.dense:DenseUpdate",
        "ia3": "git_theta.updates.ia3:Ia3Update",
        "low-rank": "git_theta.updates.low_rank:LowRankUpdate",
        "sparse": "git_theta.updates.sparse:SparseUpdate",
        "xor": "git_theta.updates.xor:XorUpdate",
    },
    "git_theta.merges": {
        "average": "git_theta.merges.average:AverageStrategy",
        "base": "git_theta.merges.pick:BaseStrategy",
        "breadcrumbs": "git_theta.merges.breadcrumbs:BreadcrumbsStrategy",
        "breadcrumbs-ties": "git_theta.merges.breadcrumbs:BreadcrumbsTiesStrategy",
        "dare": "git_theta.merges.dare:DareStrategy",
        "dare-ties": "git_theta.merges.dare_ties:DareTiesStrategy",
        "della": "git_theta.merges.della:DellaStrategy",
        "della-linear": "git_theta.merges.della:DellaLinearStrategy",
        "karcher": "git_theta.merges.karcher:KarcherStrategy",
        "model-stock": "git_theta.merges.model_stock:ModelStockStrategy",
        "multislerp": "git_theta.merges.spherical:MultislerpStrategy",
        "nearswap": "git_theta.merges.nearswap:NearswapStrategy",
        "nuslerp": "git_theta.merges.spherical:NuslerpStrategy",
        "ours": "git_theta.merges.pick:OursStrategy",
        "sce": "git_theta.merges.sce:SceStrategy",
        "slerp": "git_theta.merges.slerp:SlerpStrategy",
        "task-arithmetic": "git_theta.merges.task_arithmetic:TaskArithmeticStrategy",
        "theirs": "git_theta.merges.pick:TheirsStrategy",
        "ties": "git_theta.merges.ties:TiesStrategy",
        "weighted": "git_theta.merges.weighted:WeightedStrategy",
    },
}
