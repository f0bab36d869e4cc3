-- Refused MQTT TLS connections (kind 'mqtt_tls_refused') are failed rows: the partial index
-- of failed rows takes the new kind (its WHERE must equal the store's FAILED_SQL).
DROP INDEX audit_failed;
CREATE INDEX audit_failed ON audit(id) WHERE (kind IN ('mqtt_publish_denied', 'mqtt_subscribe_denied', 'alarm_code_refused', 'mqtt_tls_refused') OR (code IS NOT NULL AND code <> 0 AND (code < 200 OR code >= 300)));
