import { sql, type Kysely } from 'kysely'

// The assignment hot path as two SQL functions, so that POST /v1/containers costs one round trip to
// PostgreSQL instead of ten (measured: the round trips, not the queries, were the cost). The logic is the
// one services/containers/containers.service.ts documents; errors are raised with SQLSTATEs 'FR0xx' and
// mapped to problem+json there, and raising rolls the whole call back (the Idempotency-Key row included).
export async function up (db: Kysely<any>): Promise<void> {
  // A new container (state creating) and its start job; returns both as JSON.
  await sql`
create function fractal_create_container(
  p_user uuid, p_app text, p_region text, p_dpi integer, p_aes_key text, p_secret_hash text, p_deadline timestamptz
) returns jsonb language plpgsql as $$
declare
  v_job job;
  v_container container;
begin
  insert into job (kind, owner_id, message, deadline_at) values ('start_container', p_user, 'queued', p_deadline)
    returning * into v_job;
  insert into container (user_id, app_id, region_code, aes_key, secret_hash, dpi, state, start_job_id)
    values (p_user, p_app, p_region, p_aes_key, p_secret_hash, coalesce(p_dpi, 96), 'creating', v_job.id)
    returning * into v_container;
  insert into container_event (container_id, from_state, to_state, job_id) values (v_container.id, null, 'creating', v_job.id);
  return jsonb_build_object('container', to_jsonb(v_container), 'job', to_jsonb(v_job));
end $$`.execute(db)

  // The whole assignment: Idempotency-Key, offer, maintenance, one live container per user and app,
  // then a warm container claimed with SKIP LOCKED (201) or a new one with its start job (202).
  await sql`
create function fractal_assign_container(
  p_user uuid, p_key text, p_request_hash text, p_app text, p_region text, p_dpi integer,
  p_aes_key text, p_secret_hash text, p_deadline timestamptz, p_max_live integer
) returns jsonb language plpgsql as $$
declare
  v_record idempotency_record;
  v_region text;
  v_enabled boolean;
  v_window maintenance;
  v_live uuid;
  v_container container;
  v_created jsonb;
begin
  insert into idempotency_record (user_id, key, request_hash) values (p_user, p_key, p_request_hash)
    on conflict (user_id, key) do nothing;
  if not found then
    -- A replay (a concurrent first request has committed by now: the insert waited for it).
    select * into v_record from idempotency_record where user_id = p_user and key = p_key;
    if v_record.request_hash <> p_request_hash or v_record.status is null then
      raise exception 'idempotency key reused' using errcode = 'FR001';
    end if;
    return jsonb_build_object('outcome', 'replay', 'status', v_record.status, 'body', v_record.body);
  end if;

  select ar.region_code, r.enabled into v_region, v_enabled
    from app_region ar join region r on r.code = ar.region_code
    where ar.app_id = p_app
      and (ar.region_code = p_region or (p_region is null and r.enabled and not exists (
        select 1 from maintenance m where m.scope = r.code and m.ends_at > now())))
    order by r.sort_order, r.code limit 1;
  if v_region is null then
    if not exists (select 1 from app where id = p_app) then
      raise exception 'unknown app' using errcode = 'FR002';
    end if;
    raise exception 'app not offered' using errcode = 'FR003';
  end if;
  if not v_enabled then
    raise exception 'region disabled' using errcode = 'FR004', detail = v_region;
  end if;
  select * into v_window from maintenance where scope in ('global', v_region) and ends_at > now()
    order by ends_at desc limit 1;
  if found then
    raise exception '%', v_window.message using errcode = 'FR005', detail = extract(epoch from v_window.ends_at)::text;
  end if;

  -- One assignment per user and app at a time; with a plan limit (counted over every app), one per user.
  if p_max_live is not null then
    perform pg_advisory_xact_lock(hashtextextended(p_user::text, 0));
  else
    perform pg_advisory_xact_lock(hashtextextended(p_user::text || ':' || p_app, 0));
  end if;
  select id into v_live from container where user_id = p_user and app_id = p_app
    and state in ('creating', 'starting', 'available', 'in_use') limit 1;
  if v_live is not null then
    raise exception 'already running' using errcode = 'FR006', detail = v_live::text;
  end if;
  -- The plan's limit of containers at once (all apps).
  if p_max_live is not null and (select count(*) from container where user_id = p_user
      and state in ('creating', 'starting', 'available', 'in_use')) >= p_max_live then
    raise exception 'plan limit' using errcode = 'FR007', detail = p_max_live::text;
  end if;

  update container set user_id = p_user, state = 'in_use', assigned_at = now(), updated_at = now(),
      dpi = coalesce(p_dpi, dpi)
    where id = (select id from container where app_id = p_app and region_code = v_region
                  and state = 'available' and user_id is null
                order by created_at limit 1 for update skip locked)
    returning * into v_container;
  if v_container.id is not null then
    insert into container_event (container_id, from_state, to_state, reason)
      values (v_container.id, 'available', 'in_use', 'assigned from the warm pool');
    update idempotency_record set status = 201, body = jsonb_build_object('containerId', v_container.id), headers = '{}'
      where user_id = p_user and key = p_key;
    return jsonb_build_object('outcome', 'claimed', 'container', to_jsonb(v_container));
  end if;

  v_created := fractal_create_container(p_user, p_app, v_region, p_dpi, p_aes_key, p_secret_hash, p_deadline);
  update idempotency_record set status = 202, headers = '{}',
      body = jsonb_build_object('containerId', v_created->'container'->>'id', 'jobId', v_created->'job'->>'id')
    where user_id = p_user and key = p_key;
  return v_created || jsonb_build_object('outcome', 'created');
end $$`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await sql`drop function fractal_assign_container(uuid, text, text, text, text, integer, text, text, timestamptz, integer)`.execute(db)
  await sql`drop function fractal_create_container(uuid, text, text, integer, text, text, timestamptz)`.execute(db)
}
