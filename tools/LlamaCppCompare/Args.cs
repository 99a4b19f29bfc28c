using System.Globalization;

namespace BitMoe.LlamaCppCompare;

/// <summary>A small option parser: "--name value" / "-x value" pairs and "--flag" switches, each name with aliases.</summary>
public sealed class Args
{
    private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public Args(IEnumerable<string> args, IReadOnlySet<string> flags)
    {
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            string a = list[i];
            if (!a.StartsWith('-') || a.Length < 2) throw new UsageException($"unexpected argument '{a}'");
            string? value = null;
            int eq = a.IndexOf('=');
            if (eq > 0) { value = a[(eq + 1)..]; a = a[..eq]; }
            else if (!flags.Contains(a))
            {
                if (i + 1 >= list.Count) throw new UsageException($"{a}: a value is missing");
                value = list[++i];
            }
            _values[a] = value;
        }
    }

    public bool Flag(params string[] names) => names.Any(n => { _used.Add(n); return _values.ContainsKey(n); });

    public string? String(params string[] names)
    {
        foreach (var n in names) _used.Add(n);
        foreach (var n in names) if (_values.TryGetValue(n, out var v)) return v;
        return null;
    }

    public string Required(params string[] names) => String(names) ?? throw new UsageException($"{names[0]} is required");

    public int Int(int fallback, params string[] names)
    {
        var s = String(names);
        if (s == null) return fallback;
        return int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v
            : throw new UsageException($"{names[0]}: '{s}' is not an integer");
    }

    public int[] IntList(int[] fallback, params string[] names)
    {
        var s = String(names);
        if (s == null) return fallback;
        return s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(x => int.TryParse(x, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v
                : throw new UsageException($"{names[0]}: '{x}' is not an integer")).ToArray();
    }

    /// <summary>Refuses options no command asked for (typos).</summary>
    public void CheckAllUsed()
    {
        var unknown = _values.Keys.Where(k => !_used.Contains(k)).ToList();
        if (unknown.Count > 0) throw new UsageException($"unknown option {string.Join(", ", unknown)}");
    }
}

public sealed class UsageException(string message) : Exception(message);
