-- Leaks by device and identifier type.
-- Answers: which device's identifiers left the lab, of which type, how often,
-- in how many flows, to how many destinations, how many in cleartext, and
-- when first/last; the device that sent them may differ from the owner
-- (senders lists them).
-- Parameters:
--   {from:DateTime}  start of the time range (inclusive, UTC)
--   {to:DateTime}    end of the time range (exclusive, UTC)
-- Source: matches (one row per identifier match).
SELECT
    owner_device_id,
    identifier_type,
    count() AS matches,
    uniqExact(flow_id) AS flows,
    uniqExact(dst_host) AS destinations,
    sum(cleartext) AS cleartext_matches,
    arraySort(groupUniqArray(form)) AS forms,
    arraySort(groupUniqArray(device_id)) AS senders,
    arraySlice(arraySort(groupUniqArray(dst_host)), 1, 10) AS sample_destinations,
    min(time) AS first_seen,
    max(time) AS last_seen
FROM matches
WHERE time >= {from:DateTime} AND time < {to:DateTime}
GROUP BY owner_device_id, identifier_type
ORDER BY matches DESC, owner_device_id, identifier_type
