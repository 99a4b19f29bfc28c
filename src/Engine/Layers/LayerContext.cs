using BitMoe.Engine.Weights;
using BitMoe.Kernels;

namespace BitMoe.Engine.Layers;

/// <summary>
/// What every layer needs while it is built: where the tensors are, the config, the mode, the threads, the batch scratch,
/// and the arena that holds the repacked (packed-mode) ternary matrices.
/// </summary>
public sealed record LayerContext(ModelWeights Weights, ModelConfig Config, ExecutionMode Mode, WorkerPool Pool, BatchScratch Scratch,
    HugePageArena Arena);
