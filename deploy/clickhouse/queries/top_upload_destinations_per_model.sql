-- Top upload destinations per phone model.
-- Answers: for each device model, the destinations that received the most
-- bytes from devices of that model, with how many devices of the model
-- contacted each one, and the countries and organisations (GeoIP of the
-- remote address) of those flows: a name can stand for several addresses
-- (a DNS name's flows go to the resolver), so these are all of them,
-- sorted, never an arbitrary one.
-- Parameters:
--   {from:DateTime}  start of the time range (inclusive, UTC)
--   {to:DateTime}    end of the time range (exclusive, UTC)
--   {top:UInt32}     destinations per model
-- Source: flows_by_dst.
SELECT
    device_model,
    if(dst_host != '', dst_host, IPv6NumToString(dst_addr)) AS destination,
    arraySort(groupUniqArray(dst_country)) AS countries,
    arraySort(groupUniqArray(dst_org)) AS orgs,
    sum(bytes_out) AS bytes_out,
    count() AS flows,
    uniqExact(device_id) AS devices
FROM flows_by_dst
WHERE time >= {from:DateTime} AND time < {to:DateTime}
  AND direction = 'outbound'
GROUP BY device_model, destination
ORDER BY device_model, bytes_out DESC, destination
LIMIT {top:UInt32} BY device_model
