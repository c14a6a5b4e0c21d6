-- The outbox relay publishes events to EventBridge (AWS mode): unpublished events are claimed
-- for a while so that two relays never publish the same event at once.
ALTER TABLE outbox ADD COLUMN claimed_until INTEGER;
CREATE INDEX outbox_unpublished ON outbox (sequence) WHERE published_at IS NULL;
