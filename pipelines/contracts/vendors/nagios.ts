/**
 * What a Nagios or Icinga (1.x/2.x) notification command hands `orrery notify`: its macros, read from the
 * environment (NAGIOS_<MACRO> / ICINGA_<MACRO>) or from flags. Names are listed without the prefix.
 */
import { z } from "zod";

export const NAGIOS_MACROS = [
  "NOTIFICATIONTYPE",
  "HOSTNAME",
  "HOSTALIAS",
  "HOSTADDRESS",
  "HOSTSTATE",
  "HOSTSTATETYPE",
  "HOSTOUTPUT",
  "SERVICEDESC",
  "SERVICESTATE",
  "SERVICESTATETYPE",
  "SERVICEOUTPUT",
  "SERVICEATTEMPT",
  "NOTIFICATIONAUTHOR",
  "NOTIFICATIONCOMMENT",
  "TIMET",
  "HOSTPROBLEMID",
  "SERVICEPROBLEMID",
] as const;

export const NagiosMacros = z.object(Object.fromEntries(NAGIOS_MACROS.map((k) => [k, z.string().optional()])) as Record<(typeof NAGIOS_MACROS)[number], z.ZodOptional<z.ZodString>>);
export type NagiosMacros = z.infer<typeof NagiosMacros>;
