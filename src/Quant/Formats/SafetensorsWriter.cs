using System.Text;
using System.Text.Json;

namespace BitMoe.Quant.Formats;

/// <summary>
/// Writes a .safetensors file (header padded to 8 bytes, tensors in the order given), through a
/// temporary file renamed at the end so that a failure never leaves half a file behind.
/// </summary>
public static class SafetensorsWriter
{
    public sealed record Entry(string Name, string DType, long[] Shape, byte[] Data);

    public static void Write(string path, IEnumerable<Entry> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var header = new Dictionary<string, object>();
        if (metadata != null) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var t in list)
        {
            header[t.Name] = new Dictionary<string, object>
            {
                ["dtype"] = t.DType, ["shape"] = t.Shape, ["data_offsets"] = new[] { offset, offset + t.Data.Length },
            };
            offset += t.Data.Length;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int padded = (json.Length + 7) / 8 * 8;
        var headerBytes = new byte[padded];
        Array.Fill(headerBytes, (byte)' ');
        json.CopyTo(headerBytes, 0);

        AtomicFile.Write(path, stream =>
        {
            stream.Write(BitConverter.GetBytes((ulong)padded));
            stream.Write(headerBytes);
            foreach (var t in list) stream.Write(t.Data);
        });
    }
}

/// <summary>Write to PATH.tmp-XXXX in the same folder, then rename over PATH: readers never see a partial file.</summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> writeBody)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new BitMoeException($"{path}: output folder {dir} does not exist");
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.tmp-{Environment.ProcessId}");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
                writeBody(fs);
            File.Move(tmp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(tmp);
            throw new BitMoeException($"{path}: cannot write output ({e.Message})");
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    private static void TryDelete(string p)
    {
        try { if (File.Exists(p)) File.Delete(p); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
