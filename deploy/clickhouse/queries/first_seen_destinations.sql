-- First-seen destinations this week.
-- Answers: which destinations (SNI / HTTP host / DNS name, else the address)
-- did the lab contact for the first time ever within the week before
-- {now}, which devices and models talked to them, and how much they sent.
-- Scans all history of flows_by_dst, so first_seen is the true first contact.
-- Parameters:
--   {now:DateTime}   end of the week (exclusive, UTC); the week is [now - 7 days, now)
-- Source: flows_by_dst.
SELECT
    if(dst_host != '', dst_host, IPv6NumToString(dst_addr)) AS destination,
    min(time) AS first_seen,
    max(time) AS last_seen,
    count() AS flows,
    uniqExact(device_id) AS devices,
    arraySort(groupUniqArray(device_model)) AS models,
    sum(bytes_out) AS bytes_out
FROM flows_by_dst
WHERE time < {now:DateTime}
  AND direction = 'outbound'
GROUP BY destination
HAVING first_seen >= {now:DateTime} - INTERVAL 7 DAY
ORDER BY first_seen, destination
