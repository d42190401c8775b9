"""The plugins git-theta ships, by entry-point group: name -> "module:attribute".

setup.py registers exactly these as entry points, like any third-party plugin.
git_theta.plugins also loads them from here without scanning every installed
package's metadata, which costs git's filter ~40 ms at each start. No imports:
setup.py reads this file before the package is installed.
"""

BUILTIN_PLUGINS: dict[str, dict[str, str]] = {
    "git_theta.checkpoints": {
        "safetensors": "git_theta.checkpoints.safetensors:SafetensorsFormat",
        "pytorch": "git_theta.checkpoints.pytorch.format:PytorchFormat",
        "npz": "git_theta.checkpoints.npz:NpzFormat",
        "gguf": "git_theta.checkpoints.gguf:GgufFormat",
        "onnx": "git_theta.checkpoints.onnx:OnnxFormat",
        "onnx-data": "git_theta.checkpoints.onnx:OnnxDataFormat",
        "flax": "git_theta.checkpoints.flax_msgpack:FlaxMsgpackFormat",
        "tensorflow": "git_theta.checkpoints.tensorflow:TensorflowFormat",
    },
    "git_theta.updates": {
        "dense": "git_theta.updates.dense:DenseUpdate",
        "dora": "git_theta.updates.dora:DoraUpdate",
        "ia3": "git_theta.updates.ia3:Ia3Update",
        "low-rank": "git_theta.updates.low_rank:LowRankUpdate",
        "sparse": "git_theta.updates.sparse:SparseUpdate",
        "xor": "git_theta.updates.xor:XorUpdate",
    },
    "git_theta.merges": {
        "average": "git_theta.merge.strategies.average:AverageStrategy",
        "base": "git_theta.merge.strategies.pick:BaseStrategy",
        "breadcrumbs": "git_theta.merge.strategies.breadcrumbs:BreadcrumbsStrategy",
        "breadcrumbs-ties": "git_theta.merge.strategies.breadcrumbs:BreadcrumbsTiesStrategy",
        "dare": "git_theta.merge.strategies.dare:DareStrategy",
        "dare-ties": "git_theta.merge.strategies.dare_ties:DareTiesStrategy",
        "della": "git_theta.merge.strategies.della:DellaStrategy",
        "della-linear": "git_theta.merge.strategies.della:DellaLinearStrategy",
        "karcher": "git_theta.merge.strategies.karcher:KarcherStrategy",
        "model-stock": "git_theta.merge.strategies.model_stock:ModelStockStrategy",
        "multislerp": "git_theta.merge.strategies.spherical:MultislerpStrategy",
        "nearswap": "git_theta.merge.strategies.nearswap:NearswapStrategy",
        "nuslerp": "git_theta.merge.strategies.spherical:NuslerpStrategy",
        "ours": "git_theta.merge.strategies.pick:OursStrategy",
        "sce": "git_theta.merge.strategies.sce:SceStrategy",
        "slerp": "git_theta.merge.strategies.slerp:SlerpStrategy",
        "task-arithmetic": "git_theta.merge.strategies.task_arithmetic:TaskArithmeticStrategy",
        "theirs": "git_theta.merge.strategies.pick:TheirsStrategy",
        "ties": "git_theta.merge.strategies.ties:TiesStrategy",
        "weighted": "git_theta.merge.strategies.weighted:WeightedStrategy",
    },
}
