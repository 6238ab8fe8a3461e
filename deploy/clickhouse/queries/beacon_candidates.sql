-- Beacon candidates.
-- Answers: which (device, destination) pairs connect at regular intervals
-- with regular upload sizes, the RITA-style timestamp and data-size scores:
-- for the sorted start-time deltas d (zero deltas dropped) and the per-flow
-- bytes_out s, score_x = max(0, (median(x) - MAD(x)) / median(x)) where
-- MAD(x) = median(|x - median(x)|); score = (ts_score + ds_score) / 2.
-- 1.0 = perfectly periodic, same size every time. medianExact is the
-- element at floor(n / 2) of the sorted values (upper median for even n).
-- Parameters:
--   {from:DateTime}       start of the time range (inclusive, UTC)
--   {to:DateTime}         end of the time range (exclusive, UTC)
--   {min_conns:UInt32}    least connections for a pair to be scored (RITA: 4)
--   {min_score:Float64}   least score to report, e.g. 0.8
-- Source: flows_by_dst.
SELECT
    device_id,
    device_model,
    destination,
    conns,
    round(median_interval_s, 3) AS median_interval_s,
    round(mad_interval_s, 3) AS mad_interval_s,
    median_bytes,
    round(ts_raw, 3) AS ts_score,
    round(ds_raw, 3) AS ds_score,
    round((ts_raw + ds_raw) / 2, 3) AS score
FROM
(
    SELECT
        device_id, device_model, destination, conns, deltas, sizes, median_interval_s, median_bytes,
        arrayReduce('medianExact', arrayMap(x -> abs(x - median_interval_s), deltas)) AS mad_interval_s,
        arrayReduce('medianExact', arrayMap(x -> abs(x - median_bytes), sizes)) AS mad_bytes,
        if(median_interval_s > 0, greatest(0., (median_interval_s - mad_interval_s) / median_interval_s), 0.) AS ts_raw,
        if(median_bytes > 0, greatest(0., (median_bytes - mad_bytes) / median_bytes), 0.) AS ds_raw
    FROM
    (
        SELECT
            device_id,
            any(device_model) AS device_model,
            if(dst_host != '', dst_host, IPv6NumToString(dst_addr)) AS destination,
            count() AS conns,
            arrayMap(x -> x / 1e9, arrayFilter(x -> x > 0, arrayDifference(arraySort(groupArray(first_seen_ns))))) AS deltas,
            arrayMap(x -> toFloat64(x), groupArray(bytes_out)) AS sizes,
            arrayReduce('medianExact', deltas) AS median_interval_s,
            arrayReduce('medianExact', sizes) AS median_bytes
        FROM flows_by_dst
        WHERE time >= {from:DateTime} AND time < {to:DateTime}
          AND direction = 'outbound'
        GROUP BY device_id, destination
        HAVING conns >= {min_conns:UInt32} AND length(deltas) >= 3
    )
)
WHERE (ts_raw + ds_raw) / 2 >= {min_score:Float64}
ORDER BY score DESC, conns DESC, device_id, destination
