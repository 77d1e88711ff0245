-- Who may reach the persons' data keys (UU 27/2022). An example for a deployment where
-- each service connects as a role of its own (the local `bapas up` connects as postgres).
-- Run once, as the database owner, after the services have created their schemas.
--
-- Every service that decrypts reads the keys; the ones that write personal fields make
-- keys; only registration, which erases, destroys one (UPDATE sets `wrapped` to NULL).
-- Nobody deletes a row: it records who erased whom, when and on what basis. The officers'
-- console has no database role at all: it reads through the services.

CREATE SCHEMA IF NOT EXISTS privacy;
REVOKE ALL ON SCHEMA privacy FROM PUBLIC;

DO $$
DECLARE svc text;
BEGIN
  FOREACH svc IN ARRAY ARRAY['registration', 'guidance', 'supervision', 'notification',
                             'audit'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bapas_' || svc) THEN
      EXECUTE format('CREATE ROLE %I LOGIN', 'bapas_' || svc);
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA privacy TO %I', 'bapas_' || svc);
    EXECUTE format('GRANT SELECT ON privacy.subject_keys TO %I', 'bapas_' || svc);
  END LOOP;
END $$;

-- the contexts whose events carry personal fields make their persons' keys
GRANT INSERT ON privacy.subject_keys TO bapas_registration, bapas_guidance, bapas_supervision;
-- where offices keep databases of their own, a service notes a key published to the KEYS
-- stream (nothing else of the row)
GRANT UPDATE (shared) ON privacy.subject_keys
  TO bapas_registration, bapas_guidance, bapas_supervision, bapas_notification, bapas_audit;
-- registration destroys a key on erasure (and rewraps keys after a master-key rotation)
GRANT UPDATE (wrapped, master_kid, destroyed_at, destroyed_by, legal_basis)
  ON privacy.subject_keys TO bapas_registration;
