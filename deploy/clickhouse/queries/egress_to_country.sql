-- Data leaving for a given country.
-- Answers: which devices sent how much to which destinations located (GeoIP
-- of the remote address) in one country, with flow and identifier-match
-- counts; largest uploads first. A destination name can stand for several
-- addresses in the country: orgs and asns list all of theirs, sorted.
-- Parameters:
--   {country:String} ISO 3166-1 alpha-2 code, e.g. 'CN'
--   {from:DateTime}  start of the time range (inclusive, UTC)
--   {to:DateTime}    end of the time range (exclusive, UTC)
-- Source: flows_by_dst (destination-ordered copy of flows).
SELECT
    device_id,
    any(device_model) AS device_model,
    if(dst_host != '', dst_host, IPv6NumToString(dst_addr)) AS destination,
    arraySort(groupUniqArray(dst_org)) AS orgs,
    arraySort(groupUniqArray(dst_asn)) AS asns,
    count() AS flows,
    sum(bytes_out) AS bytes_out,
    sum(bytes_in) AS bytes_in,
    sum(match_count) AS identifier_matches,
    min(time) AS first_seen,
    max(time) AS last_seen
FROM flows_by_dst
WHERE dst_country = {country:String}
  AND time >= {from:DateTime} AND time < {to:DateTime}
  AND direction = 'outbound'
GROUP BY device_id, destination
ORDER BY bytes_out DESC, device_id, destination
LIMIT 1000
