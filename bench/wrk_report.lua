-- wrk script for the bench: optional random execution ids, and a JSON summary line.
-- Usage: wrk ... -s wrk_report.lua <url> [-- <lowest id> <highest id> [<step>]]
-- With a step, only lowest, lowest + step, lowest + 2 * step, ... are asked for.
local lowest, highest, step = nil, nil, 1

function init(args)
  if #args >= 2 then
    lowest, highest = tonumber(args[1]), tonumber(args[2])
  end
  if #args >= 3 then
    step = tonumber(args[3])
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
  if lowest then
    local n = math.random(0, math.floor((highest - lowest) / step))
    return wrk.format(nil, "/api/executions/" .. (lowest + n * step))
  end
  return wrk.format()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, '
    .. '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
