using System.Text;
using LLama;
using LLama.Common;
using LLama.Exceptions;
using LLama.Native;

namespace BitMoe.LlamaCppCompare;

/// <summary>
/// llama.cpp through LLamaSharp: the native log hooked before the library loads (so a refused
/// file can be explained from llama.cpp's own messages), and model/context creation on the CPU.
/// </summary>
public static class LlamaNative
{
    private static readonly StringBuilder Log = new();
    private static readonly object LogLock = new();
    private static bool _echo;
    // Kept in a static field: the native side holds only a function pointer to it.
    private static NativeLogConfig.LLamaLogCallback? _callback;

    /// <summary>Installs the log hook; call before anything touches the native library.</summary>
    public static void Init(bool verbose)
    {
        _echo = verbose;
        _callback = (level, message) =>
        {
            lock (LogLock)
            {
                if (level != LLamaLogLevel.Continue) Log.Append('[').Append(level).Append("] ");
                Log.Append(message);
                if (_echo) Console.Error.Write(message);
            }
        };
        NativeLogConfig.llama_log_set(_callback);
    }

    /// <summary>Everything llama.cpp has logged so far.</summary>
    public static string LogText { get { lock (LogLock) return Log.ToString(); } }

    /// <summary>The log lines that explain a failure: errors and warnings, and the loader's last lines.</summary>
    public static IEnumerable<string> Diagnostics()
    {
        var lines = LogText.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var important = lines.Where(l => l.StartsWith("[Error]") || l.StartsWith("[Warning]")
            || l.Contains("error", StringComparison.OrdinalIgnoreCase) || l.Contains("failed", StringComparison.OrdinalIgnoreCase)).ToList();
        return important.Count > 0 ? important : lines.TakeLast(15);
    }

    /// <summary>CPU-only parameters for one context of <paramref name="ctx"/> positions.</summary>
    /// <param name="kvType">the KV cache type (llama.cpp's -ctk / -ctv); null keeps llama.cpp's default, f16</param>
    public static ModelParams Params(string path, int ctx, int batch, int ubatch, int threads, bool? flashAttention = null, GGMLType? kvType = null)
    {
        var p = new ModelParams(path)
        {
            ContextSize = (uint)ctx,
            BatchSize = (uint)batch,
            UBatchSize = (uint)ubatch,
            Threads = threads,
            BatchThreads = threads,
            GpuLayerCount = 0,
            SeqMax = 1,
            Embeddings = false,
        };
        if (flashAttention is bool fa) p.FlashAttention = fa;
        if (kvType is GGMLType type)
        {
            p.TypeK = type;
            p.TypeV = type;
        }
        return p;
    }

    /// <summary>Loads the weights; a refusal becomes an exception carrying llama.cpp's own explanation.</summary>
    public static LLamaWeights LoadWeights(ModelParams p)
    {
        try
        {
            return LLamaWeights.LoadFromFile(p);
        }
        catch (LoadWeightsFailedException e)
        {
            throw new LlamaLoadException($"llama.cpp could not load {p.ModelPath} ({e.Message}); its log says:\n  "
                + string.Join("\n  ", Diagnostics()));
        }
    }

    /// <summary>Which build of the native library LLamaSharp picked (AVX level), and llama.cpp's system info line.</summary>
    public static string Describe()
    {
        string lib = "?";
        try
        {
            var loaded = NativeApi.GetLoadedNativeLibrary(NativeLibraryName.LLama);
            if (loaded?.Metadata is { } m) lib = $"avx level {m.AvxLevel}";
        }
        catch (Exception) { /* informative only */ }
        string info = System.Runtime.InteropServices.Marshal.PtrToStringAnsi(NativeApi.llama_print_system_info()) ?? "";
        return $"llama.cpp native library: {lib}; {info.Trim()}";
    }
}

public sealed class LlamaLoadException(string message) : Exception(message);
