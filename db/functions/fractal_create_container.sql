-- A new container (state creating) and its start job, in one call; returns both as JSON. Called by
-- fractal_assign_container when no warm container is free, and by the warm-pool refill.
create or replace function fractal_create_container(
  p_user uuid, p_app text, p_region text, p_dpi integer, p_aes_key text, p_secret_hash text, p_deadline timestamptz
) returns jsonb language plpgsql as $$
declare
  v_job job;
  v_container container;
begin
  insert into job (kind, owner_id, message, deadline_at) values ('start_container', p_user, 'queued', p_deadline)
    returning * into v_job;
  insert into container (user_id, app_id, region_code, aes_key, secret_hash, dpi, state, start_job_id)
    values (p_user, p_app, p_region, p_aes_key, p_secret_hash, coalesce(p_dpi, (select dpi_default from app where id = p_app), 96), 'creating', v_job.id)
    returning * into v_container;
  insert into container_event (container_id, from_state, to_state, job_id) values (v_container.id, null, 'creating', v_job.id);
  return jsonb_build_object('container', to_jsonb(v_container), 'job', to_jsonb(v_job));
end $$;
